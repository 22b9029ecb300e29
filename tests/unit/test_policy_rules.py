"""The policy pack's rules on property maps shaped like our resources' checked inputs.

The end-to-end test runs the same pack under the Pulumi CLI; these cover each rule's edges.
"""

import importlib.util
import sys

from tests.e2e.pulumi_cli import REPO

_spec = importlib.util.spec_from_file_location(
    "eci_policy", REPO / "examples" / "policy" / "eci_policy.py"
)
assert _spec and _spec.loader
policy = importlib.util.module_from_spec(_spec)
sys.modules["eci_policy"] = policy
_spec.loader.exec_module(policy)

CACHE, GROUP = policy.CACHE, policy.GROUP


def group(*images: str, cache: str | None = None, policy_: str = "IfNotPresent", **extra):
    containers = [
        {"name": f"c{i}", "image": image, "image_pull_policy": policy_}
        for i, image in enumerate(images)
    ]
    return {"containers": containers, "cache": cache, **extra}


def test_a_manual_cache_without_retention_is_flagged() -> None:
    assert policy.manual_cache_without_retention(CACHE, {"images": ["nginx"]})
    kept = {"images": ["nginx"], "retention_days": 7}
    assert not policy.manual_cache_without_retention(CACHE, kept)
    assert not policy.manual_cache_without_retention(GROUP, group("nginx"))


def test_more_than_20_distinct_images_in_a_cache_or_an_automatic_cache() -> None:
    images = [f"registry.example.com/app:{i}" for i in range(21)]
    assert policy.too_many_images(CACHE, {"images": images}) == [
        "21 images: an image cache holds at most 20"
    ]
    assert policy.too_many_images(GROUP, group(*images))  # auto-create by default
    assert not policy.too_many_images(GROUP, group(*images, cache="none"))
    # Normalized, then counted once: "nginx" is docker.io/library/nginx:latest.
    same = [*images[:19], "nginx", "docker.io/library/nginx:latest"]
    assert not policy.too_many_images(CACHE, {"images": same})


def test_automatic_matching_with_pull_policy_always() -> None:
    found = policy.pull_policy_always_with_automatic_matching(
        GROUP, group("nginx", cache="auto", policy_="Always")
    )
    assert found and "(c0)" in found[0]
    assert not policy.pull_policy_always_with_automatic_matching(
        GROUP, group("nginx", cache="explicit", policy_="Always", cache_id="imc-1")
    )
    assert not policy.pull_policy_always_with_automatic_matching(GROUP, group("nginx"))


def test_private_registries_outside_acr_need_credentials() -> None:
    rule = policy.private_registry_without_credentials
    assert rule(CACHE, {"images": ["registry.example.com/team/web:1"]}) == [
        "images from the private registry registry.example.com (not Alibaba Cloud Container "
        "Registry) without credentials for it: add credentials (server, username, password)"
    ]
    with_credentials = {
        "images": ["registry.example.com/team/web:1"],
        "credentials": [{"server": "https://registry.example.com", "username": "ci"}],
    }
    assert not rule(CACHE, with_credentials)
    assert not rule(CACHE, {"images": ["nginx", "ghcr.io/org/tool:2"]})
    assert not rule(CACHE, {"images": ["registry.cn-hangzhou.aliyuncs.com/ns/app:1"]})
    # A development registry on this machine serves the local backend; not the cloud.
    assert not rule(GROUP, group("127.0.0.1:5055/demo/web:1.0", backend="local"))
    assert rule(GROUP, group("127.0.0.1:5055/demo/web:1.0", backend="alicloud"))
    assert not rule(CACHE, {"images": ["internal.example/app:1"]}, anonymous=["internal.example"])


def test_public_images_on_alicloud_need_an_eip_or_a_nat_gateway() -> None:
    rule = policy.public_images_without_internet
    cloud_group = ("urn:g", GROUP, group("nginx", backend="alicloud"))
    [(urn, message)] = rule([cloud_group])
    assert urn == "urn:g" and message.startswith("pulls from docker.io over the public network")
    nat = ("urn:nat", "alicloud:vpc/natGateway:NatGateway", {})
    assert not rule([cloud_group, nat])
    assert not rule([cloud_group], internet_declared=True)
    cache_with_eip = {"images": ["nginx"], "backend": "alicloud", "eip_instance_id": "eip-1"}
    assert not rule([("urn:c", CACHE, cache_with_eip)])
    acr_only = {"images": ["registry.cn-hangzhou.aliyuncs.com/ns/app:1"], "backend": "alicloud"}
    assert not rule([("urn:c", CACHE, acr_only)])
    assert not rule([("urn:g", GROUP, group("nginx", backend="local"))])
