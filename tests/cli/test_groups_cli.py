"""``eci-imagecache groups``: groups made by the local backend, read through the real CLI."""

import json
import time

import pytest

from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.engine.models import ContainerGroupSpec
from eci_imagecache.runtime import host

from ..conftest import Registry, missing
from .test_cli import cli  # noqa: F401 - the fixture


@pytest.fixture
def finished_job(tmp_path, registry: Registry):
    if host.unavailable():
        missing(f"containers cannot run here: {host.unavailable()}")
    backend = LocalBackend(data_dir=tmp_path / "data")
    image = registry.runnable.references(registry.host)["job_fail"]
    made = backend.create_container_group(
        ContainerGroupSpec(
            name="nightly",
            cache="none",
            restart_policy="Never",
            containers=[{"name": "job", "image": image, "env": {"EXIT_CODE": "5"}}],
        )
    )
    deadline = time.monotonic() + 20
    while backend.get_container_group(made.id).status.value != "Failed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    yield made
    backend.delete_container_group(made.id)


def test_groups_list_show_and_logs(cli, finished_job) -> None:  # noqa: F811
    [group] = json.loads(cli("--json", "groups", "list").stdout)
    assert (group["id"], group["status"]) == (finished_job.id, "Failed")
    assert group["containers"][0]["exit_code"] == 5
    table = cli("groups", "list").stdout
    assert finished_job.id in table and "job: Terminated exit 5" in table
    shown = cli("groups", "show", finished_job.id).stdout
    assert "status: Failed" in shown and "image preparation" in shown
    assert cli("groups", "logs", finished_job.id).stdout == "job failing\n"
    assert cli("groups", "logs", finished_job.id, "--tail", "8").stdout == "failing\n"
    missing_group = cli("groups", "show", "eci-00000000000000000000", code=3)
    assert "not found" in missing_group.stderr
