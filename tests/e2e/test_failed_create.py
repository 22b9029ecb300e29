"""A container group that fails at create, under the real Pulumi CLI, as with pulumi-alicloud:
`pulumi up` fails with one line (the group, the reason, the exit code, its last log lines); the
group stays in the stack (the engine's partial state), the next `up` asks again, a changed
program replaces it, and `pulumi destroy` leaves nothing, on both backends."""

import json
import sys
from pathlib import Path

import pytest

from eci_imagecache.backends.emulator.server import EmulatorServer
from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.runtime import host

from ..conftest import Registry, missing
from .pulumi_cli import Stack
from .test_plugin_yaml import yaml_host, yaml_project  # noqa: F401 (yaml_host: a fixture)

pytestmark = pytest.mark.e2e
KEY_ID, KEY_SECRET = "LTAI-e2e-failing", "e2e-secret-Fx9"
GROUP_TYPE = "pulumi-python:dynamic/eci:ContainerGroup"

PROGRAM = """
import pulumi

from eci_imagecache.dynamic import ContainerArgs, ContainerGroup, ContainerGroupArgs

config = pulumi.Config()
group = ContainerGroup(
    "exits-at-start",
    ContainerGroupArgs(
        containers=[
            ContainerArgs(
                name="main",
                image=config.require("image"),
                command=["/bin/sh", "-c", config.require("script")],
            )
        ],
        restart_policy="Never",
        cache="none",
    ),
)
pulumi.export("status", group.status)
"""
FAILS = "echo 'config file missing'; exit 1"


@pytest.fixture(autouse=True)
def runtime_here() -> None:
    reason = host.unavailable()
    if reason:
        missing(f"containers cannot run here: {reason}")


def failing_stack(tmp_path: Path, registry: Registry, **stack: object) -> Stack:
    project = tmp_path / "exits-at-start"
    project.mkdir()
    (project / "__main__.py").write_text(PROGRAM)
    (project / "Pulumi.yaml").write_text(
        "name: eci-exits-at-start\n"
        "runtime:\n  name: python\n  options:\n"
        f"    toolchain: pip\n    virtualenv: {Path(sys.executable).parents[1]}\n"
    )
    return Stack(project_dir=project, work=tmp_path / "stack", **stack)  # type: ignore[arg-type]


def groups_in_state(stack: Stack) -> list[dict]:
    resources = json.loads(stack.export())["deployment"].get("resources") or []
    return [r for r in resources if r["type"] == GROUP_TYPE]


def fail_keep_replace_destroy(stack: Stack, backend, registry: Registry, logs: bool) -> None:
    """What both backends must do with the group that exits 1 at start."""
    up = stack.run("up", "--yes", "--skip-preview", check=False)
    assert up.returncode != 0
    [made] = backend.list_container_groups()
    assert made.status.value == "Failed"
    line = next(x for x in up.stdout.splitlines() if f"({made.id})" in x)
    assert f"container group exits-at-start ({made.id}) failed: " in line
    assert "exited with code 1" in line
    if logs:  # the local backend keeps a container's output
        assert "last log lines of main: config file missing" in line
    assert "Traceback" not in up.stdout + up.stderr

    # Kept in the stack, with its outputs and the engine's record of the failure.
    [kept] = groups_in_state(stack)
    assert kept["id"] == made.id and kept["outputs"]["status"] == "Failed"
    assert any("exited with code 1" in e for e in kept.get("initErrors", []))

    # The next up asks again (nothing changed): it fails the same way, and makes nothing new.
    again = stack.run("up", "--yes", "--skip-preview", check=False)
    assert again.returncode != 0 and f"({made.id}) failed: " in again.stdout
    assert [g.id for g in backend.list_container_groups()] == [made.id]

    # A changed program replaces it: the new group runs to completion, the old one is gone.
    stack.run("config", "set", "script", "echo 'config file found'")
    stack.run("up", "--yes", "--skip-preview")
    [replaced] = backend.list_container_groups()
    assert replaced.id != made.id and replaced.status.value == "Succeeded"
    assert stack.outputs()["status"] == "Succeeded"
    [kept] = groups_in_state(stack)
    assert kept["id"] == replaced.id and not kept.get("initErrors")

    # Replaced by one that fails: the replacement did not complete, so the engine keeps the new
    # group (failed) and the one it was to replace, marked for deletion. Destroy takes both.
    stack.run("config", "set", "script", FAILS)
    assert stack.run("up", "--yes", "--skip-preview", check=False).returncode != 0
    pending = {g["id"]: g for g in groups_in_state(stack)}
    assert pending[replaced.id].get("delete") is True
    [failed] = [g for g in pending.values() if g["id"] != replaced.id]
    assert failed["initErrors"] and failed["outputs"]["status"] == "Failed"
    assert {g.id for g in backend.list_container_groups()} == set(pending)
    stack.run("destroy", "--yes", "--skip-preview")
    assert groups_in_state(stack) == []
    assert backend.list_container_groups() == []


def test_a_container_that_exits_1_at_start_fails_up_and_destroy_leaves_nothing(
    pulumi_bin, tmp_path: Path, registry: Registry
) -> None:
    stack = failing_stack(tmp_path, registry)
    image = registry.runnable.references(registry.host)["job_ok"]
    stack.init({"image": image, "script": FAILS})
    fail_keep_replace_destroy(stack, stack.backend(), registry, logs=True)


def test_the_same_on_the_alicloud_backend_through_the_emulator(
    pulumi_bin, tmp_path: Path, registry: Registry
) -> None:
    cloud = LocalBackend(data_dir=tmp_path / "cloud", region="cn-hangzhou")
    with EmulatorServer(cloud, {KEY_ID: KEY_SECRET}) as emulator:
        stack = failing_stack(
            tmp_path,
            registry,
            extra_env={
                "ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID,
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": KEY_SECRET,
            },
        )
        image = registry.runnable.references(registry.host)["job_ok"]
        stack.init(
            {
                "image": image,
                "script": FAILS,
                "eci:backend": "alicloud",
                "eci:region": "cn-hangzhou",
                "eci:endpoint": emulator.endpoint,
            }
        )
        fail_keep_replace_destroy(stack, cloud, registry, logs=False)


@pytest.mark.usefixtures("yaml_host")
def test_the_same_through_the_provider_plugin_from_yaml(tmp_path: Path, registry: Registry) -> None:
    """The plugin (YAML, Go, TypeScript programs) runs the same hooks: the same line, and the
    group kept in the stack until destroy."""
    image = registry.runnable.references(registry.host)["job_ok"]
    program = (
        "resources:\n"
        "  exits-at-start:\n"
        "    type: eci-imagecache:index:ContainerGroup\n"
        "    properties:\n"
        "      containers:\n"
        "        - name: main\n"
        f"          image: {image}\n"
        f'          command: [/bin/sh, -c, "{FAILS}"]\n'
        "      restartPolicy: Never\n"
        "      cache: none\n"
    )
    project = yaml_project(tmp_path / "project", program, name="exits-at-start")
    stack = Stack(project_dir=project, work=tmp_path).init()
    up = stack.run("up", "--yes", "--skip-preview", check=False)
    assert up.returncode != 0
    backend = stack.backend()
    [made] = backend.list_container_groups()
    assert f"({made.id}) failed: container main exited with code 1" in up.stdout
    assert "last log lines of main: config file missing" in up.stdout
    resources = json.loads(stack.export())["deployment"].get("resources") or []
    [kept] = [r for r in resources if r["type"] == "eci-imagecache:index:ContainerGroup"]
    assert kept["id"] == made.id and kept["outputs"]["status"] == "Failed"
    assert kept.get("initErrors")
    stack.run("destroy", "--yes", "--skip-preview")
    assert backend.list_container_groups() == []
