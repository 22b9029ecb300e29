"""A ContainerGroup's create through the provider's hooks, as pulumi-alicloud's: it waits until
the group is up; a group that fails (or crashes at start) fails the create with one line and is
kept, with its outputs, for the engine to keep in the stack. Real registry, real crun."""

from pathlib import Path

import pytest

from eci_imagecache.dynamic.container_group_provider import ContainerGroupProvider
from eci_imagecache.dynamic.sdk_server_patch import ResourceInitFailed
from eci_imagecache.runtime import host
from eci_imagecache.testing.registry import free_port

from ..conftest import Registry, missing


@pytest.fixture(autouse=True)
def runtime_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reason = host.unavailable()
    if reason:
        missing(f"containers cannot run here: {reason}")
    monkeypatch.setenv("ECI_IMAGECACHE_HOME", str(tmp_path / "eci"))


def props(registry: Registry, image: str, **group: object) -> dict:
    container = {"name": "main", "image": registry.runnable.references(registry.host)[image]}
    container.update(group.pop("container", {}))  # type: ignore[arg-type]
    return {
        "name": f"{image.replace('_', '-')}-group",
        "containers": [container],
        "restart_policy": "Never",
        "cache": "none",
        **group,
    }


def test_a_job_that_exits_1_at_start_fails_the_create_and_is_kept(registry: Registry) -> None:
    provider = ContainerGroupProvider()
    with pytest.raises(ResourceInitFailed) as failed:
        provider.create(props(registry, "job_fail"))
    message = str(failed.value)
    assert "\n" not in message
    assert message.startswith(
        f"container group job-fail-group ({failed.value.id}) failed: "
        "container main exited with code 1; "
    )
    assert "last log lines of main: job failing" in message
    # Made, and kept: the engine records these outputs, and destroy deletes by this id.
    assert failed.value.outs["status"] == "Failed"
    assert failed.value.outs["containers_state"][0]["exit_code"] == 1
    backend = provider.settings_for({}).open()
    assert backend.get_container_group(failed.value.id).status.value == "Failed"

    # The next up asks again (an update of a resource that did not initialize): still failed.
    outs = failed.value.outs
    with pytest.raises(ResourceInitFailed, match="exited with code 1"):
        provider.update(failed.value.id, outs, props(registry, "job_fail"))
    provider.delete(failed.value.id, outs)
    assert backend.list_container_groups() == []


def test_a_job_that_succeeds_is_a_successful_create_with_its_start_up(registry: Registry) -> None:
    provider = ContainerGroupProvider()
    created = provider.create(props(registry, "job_ok"))
    provider.delete(created.id, created.outs)
    assert created.outs["status"] == "Succeeded"
    assert created.outs["containers_state"][0]["exit_code"] == 0
    startup = created.outs["phases"]["startup_seconds"]
    assert 0 < startup < 60
    # The start-up counts the preparation and the container start it follows.
    assert startup >= created.outs["phases"]["image_preparation_seconds"]


def test_a_server_that_crashes_at_start_fails_the_create(registry: Registry) -> None:
    """Restart policy Always: the group can say Running while its container restarts."""
    crash = {"command": ["/bin/sh", "-c", "echo cannot bind; exit 1"]}
    with pytest.raises(ResourceInitFailed) as failed:
        ContainerGroupProvider().create(
            props(registry, "httpd", restart_policy="Always", container=crash)
        )
    message = str(failed.value)
    assert f"({failed.value.id}) is not up: container main is restarting in " in message
    assert "after exit code 1 (Always)" in message
    assert "last log lines of main: cannot bind" in message


def test_a_server_that_stays_up_is_created_running(registry: Registry) -> None:
    port = {"env": {"PORT": str(free_port())}}
    created = ContainerGroupProvider().create(
        props(registry, "httpd", restart_policy="Always", container=port)
    )
    assert created.outs["status"] == "Running"
    assert created.outs["containers_state"][0]["state"] == "Running"
    ContainerGroupProvider().delete(created.id, created.outs)
