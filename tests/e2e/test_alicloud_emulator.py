"""The quickstart with ``eci:backend alicloud``: the official SDK, under the real Pulumi CLI,
against the ECI OpenAPI emulator."""

import pytest

from eci_imagecache.backends.emulator.server import EmulatorServer
from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.testing.registry import free_port

from ..conftest import Registry
from .pulumi_cli import REPO, Stack

pytestmark = pytest.mark.e2e
KEY_ID, KEY_SECRET = "LTAI-e2e-emulator", "e2e-secret-Lk3"


def test_quickstart_on_the_alicloud_backend(pulumi_bin, tmp_path, registry: Registry) -> None:
    cloud = LocalBackend(data_dir=tmp_path / "cloud", region="cn-hangzhou")
    with EmulatorServer(cloud, {KEY_ID: KEY_SECRET}) as emulator:
        stack = Stack(
            project_dir=REPO / "examples" / "quickstart",
            work=tmp_path / "stack",
            extra_env={
                "ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID,
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": KEY_SECRET,
            },
        )
        stack.init(
            {
                "registry": registry.host,
                # The web server must come up for the create to succeed: a port of its own.
                "serverPort": str(free_port()),
                "eci:backend": "alicloud",
                "eci:region": "cn-hangzhou",
                "eci:endpoint": emulator.endpoint,
            }
        )
        up = stack.run("up", "--yes", "--skip-preview")
        assert "6 created" in up.stdout
        out = stack.outputs()
        assert out["cache_status"] == "Ready"
        assert [c.id for c in cloud.list_image_caches()] == [out["cache_id"]]
        assert out["auto_match"].startswith(f"{out['cache_id']} (exact)")
        assert out["explicit_match"] == out["cache_id"]
        assert len(cloud.list_container_groups()) == 4
        # Every group came up, and the headline is measured through the cloud's API too.
        assert {g.status.value for g in cloud.list_container_groups()} == {"Running"}
        assert out["startup_seconds"]["with_cache"] is not None
        stack.run("preview", "--expect-no-changes")
        decided = group_decisions(stack.state())
        assert decided["web-auto"]["match_degree"] == "exact"
        assert decided["web-auto"]["cache_name"] and decided["web-explicit"]["cache_name"]
        stack.run("refresh", "--yes", "--skip-preview", "--expect-no-changes")
        # A refresh reads the groups through DescribeContainerGroups, whose events name only
        # the cache used: what each create decided (name, degree, why) stays as recorded.
        assert group_decisions(stack.state()) == decided
        stack.run("destroy", "--yes", "--skip-preview")
        assert cloud.list_image_caches() == [] and cloud.list_container_groups() == []
        # Credentials came from the environment: none of them is in the stack's state.
        assert KEY_SECRET not in stack.export()


def group_decisions(state: dict) -> dict[str, dict]:
    """Each container group's cache decision, as the stack's state (its deployment) holds it."""
    keys = ("cache_used", "cache_name", "match_degree", "match_reason", "auto_created_cache_id")
    return {
        r["urn"].rsplit("::", 1)[-1]: {k: r["outputs"].get(k) for k in keys}
        for r in state.get("resources") or []
        if r["type"].endswith(":ContainerGroup")
    }
