"""examples/alicloud under Pulumi's mocks: the network from pulumi-alicloud reaches our cache and
container groups, and the groups name the cache explicitly."""

import runpy
from pathlib import Path

import pulumi
import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "alicloud" / "__main__.py"


class Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: dict[str, dict] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.resources[args.name] = {"type": args.typ, **args.inputs}
        outputs = dict(args.inputs)
        if args.typ.endswith("eci:ImageCache"):
            outputs.update(cache_id=f"imc-{args.name}", status="Ready")
        if args.typ.endswith("eci:ContainerGroup"):
            outputs.update(group_id=f"eci-{args.name}", match_degree="exact")
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


@pytest.fixture
def mocks(monkeypatch) -> Mocks:
    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project="eci-alicloud", stack="test", preview=False)
    monkeypatch.setenv("PULUMI_CONFIG", '{"eci:backend": "alicloud", "eci:region": "cn-hangzhou"}')
    pulumi.runtime.config.set_all_config({"eci:backend": "alicloud", "eci:region": "cn-hangzhou"})
    return mocks


@pulumi.runtime.test
def test_alicloud_example_wires_network_into_cache_and_groups(mocks: Mocks):
    program = runpy.run_path(str(EXAMPLE))

    def check(_: object) -> None:
        cache = mocks.resources["app"]
        # The stack's backend and region, registered for policies and reviews to read.
        assert cache["backend"] == "alicloud" and cache["region"] == "cn-hangzhou"
        assert cache["vswitch_id"] == "eci-vswitch-id"
        assert cache["security_group_id"] == "eci-sg-id"
        assert cache["instant"] is True and cache["eviction"] == "LRU"
        assert sorted(cache["images"]) == sorted(
            [
                "registry.cn-hangzhou.aliyuncs.com/eci_open/nginx:1.25",
                "registry.cn-hangzhou.aliyuncs.com/eci_open/redis:7",
            ]
        )
        web = mocks.resources["app-web"]
        assert (web["cache"], web["cache_id"]) == ("explicit", "app-id")
        assert web["vswitch_id"] == "eci-vswitch-id"
        assert mocks.resources["eci-vswitch"]["vpcId"] == "eci-vpc-id"

    # The web group registers once the cache's id is known: by then everything has.
    return program["app"].groups["web"].group_id.apply(check)
