"""Containers that really run, under the real Pulumi CLI: the quickstart's web server answers
on its address, jobs end with their exit codes, refresh sees a container die, and destroy
leaves no process, mount or directory behind."""

import contextlib
import ipaddress
import json
import os
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

from eci_imagecache.backends.local.view import LocalView
from eci_imagecache.runtime import host
from eci_imagecache.runtime.supervisor import Runtime

from ..conftest import Registry, missing
from .pulumi_cli import Stack, descendants

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def runtime_here() -> None:
    reason = host.unavailable()
    if reason:
        missing(f"containers cannot run here: {reason}")


def traces(group_ids: list[str]) -> list[str]:
    """Processes and mounts (in any mount namespace) of these groups, and crun's state."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            mounts = (proc / "mountinfo").read_text()
        except OSError:
            continue
        for group_id in group_ids:
            if group_id in cmdline:
                found.append(f"process {proc.name} of {group_id}")
            if group_id in mounts:
                found.append(f"a mount of {group_id} seen by process {proc.name}")
    found += [
        f"crun state {p.name}"
        for p in Path("/run/crun").glob("*")
        if any(p.name.startswith(g) for g in group_ids)
    ]
    return found


def get_page(address: str) -> httpx.Response:
    deadline = time.monotonic() + 15
    while True:
        try:
            return httpx.get(f"http://{address}/", timeout=2)
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"nothing answers at {address}"
            time.sleep(0.1)


def test_quickstart_serves_http_refresh_sees_a_death_destroy_leaves_nothing(
    quickstart: Stack,
) -> None:
    quickstart.run("up", "--yes", "--skip-preview")
    out = quickstart.outputs()
    assert out["web_status"] == "Running"
    assert out["web_containers"][0]["state"] == "Running"
    page = get_page(out["web_address"])
    assert page.status_code == 200 and "eci-imagecache demo" in page.text
    # At the group's own address on the host's loopback; its network is its own, so nothing of
    # it answers on the host's 127.0.0.1.
    host_part, _, port = out["web_address"].rpartition(":")
    assert ipaddress.ip_address(host_part).is_loopback and host_part != "127.0.0.1"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
    assert out["web_phases"]["container_start_seconds"] > 0

    # The container's process dies: the group restarts it (Always), and refresh shows it.
    backend = quickstart.backend()
    groups = backend.list_container_groups()
    [server] = [g for g in groups if g.name.startswith("web-server")]
    pid = int((backend.ctx.runtime.groups_dir / server.id / "containers/httpd/pid").read_text())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while backend.get_container_group(server.id).containers[0].restart_count < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    quickstart.run("refresh", "--yes", "--skip-preview")
    [refreshed] = [
        r["outputs"]
        for r in json.loads(quickstart.export())["deployment"]["resources"]
        if r["urn"].endswith("::web-server")
    ]
    assert refreshed["containers_state"][0]["restart_count"] >= 1
    assert refreshed["containers_state"][0]["reason"].endswith("killed by signal 9")
    # Stack outputs come from the program: an up (nothing to change) shows the refreshed state.
    quickstart.run("up", "--yes", "--skip-preview")
    after = quickstart.outputs()
    assert after["web_containers"][0]["restart_count"] >= 1
    get_page(after["web_address"])

    ids = [g.id for g in groups]
    assert traces(ids)
    quickstart.run("destroy", "--yes", "--skip-preview")
    assert traces(ids) == []
    assert list(backend.ctx.runtime.groups_dir.iterdir()) == []
    assert backend.list_container_groups() == []


def test_jobs_end_succeeded_and_failed_with_their_exit_codes(example, registry: Registry) -> None:
    """The job that succeeds is created; the one that fails fails `up` and stays in the stack."""
    stack = example("jobs", {"registry": registry.host, "failCode": "7"})
    up = stack.run("up", "--yes", "--skip-preview", check=False)
    assert up.returncode != 0
    backend = stack.backend()
    groups = {g.name: g for g in backend.list_container_groups()}
    ok, failing = groups["nightly-report"], groups["nightly-import"]
    assert (
        f"container group nightly-import ({failing.id}) failed: container job exited with code 7;"
        " last log lines of job: job failing;"
    ) in up.stdout
    assert "nightly-report" not in up.stdout.split("Diagnostics:")[-1]

    resources = {r["urn"].rsplit("::", 1)[1]: r for r in stack.state()["resources"]}
    report, imported = resources["nightly-report"], resources["nightly-import"]
    assert report["outputs"]["status"] == "Succeeded" and not report.get("initErrors")
    assert report["outputs"]["containers_state"][0] | {"reason": ""} == {
        "name": "job",
        "state": "Terminated",
        "exit_code": 0,
        "restart_count": 0,
        "reason": "",
    }
    assert report["outputs"]["phases"]["image_preparation_seconds"] > 0
    assert imported["outputs"]["status"] == "Failed" and imported["initErrors"]
    assert imported["outputs"]["containers_state"][0]["exit_code"] == 7
    assert backend.container_logs(ok.id, "job") == b"job ran: report written\n"

    ids = [ok.id, failing.id]
    stack.run("destroy", "--yes", "--skip-preview")
    assert traces(ids) == []
    assert list(backend.ctx.runtime.groups_dir.iterdir()) == []
    assert backend.list_container_groups() == []


SLOW_START = """
import pulumi

from eci_imagecache.dynamic import ContainerArgs, ContainerGroup, ContainerGroupArgs

config = pulumi.Config()
image = config.require("image")
# Each stops at once on SIGTERM (a shell as a container's first process ignores it otherwise).
warm_up = f"trap 'exit 0' TERM; sleep {config.require('warmUpSeconds')} & wait"
serve = "trap 'exit 0' TERM; sleep 600 & wait"
group = ContainerGroup(
    "slow-start",
    ContainerGroupArgs(
        init_containers=[ContainerArgs(name="warm-up", image=image, command=["sh", "-c", warm_up])],
        containers=[ContainerArgs(name="main", image=image, command=["sh", "-c", serve])],
        restart_policy="Never",
        cache="none",
    ),
)
pulumi.export("group_id", group.group_id)
pulumi.export("status", group.status)
"""


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # ended meanwhile
        return b""


def mounts_on_host(data_dir: Path) -> list[str]:
    """Mount points under the backend's data directory in this (the host's) mount namespace."""
    return [line for line in Path("/proc/mounts").read_text().splitlines() if str(data_dir) in line]


def test_provider_killed_mid_start_leaves_nothing_recovery_does_not_clean(
    pulumi_bin: Path, tmp_path: Path, registry: Registry
) -> None:
    """`pulumi up` of a group whose init container takes a while; SIGKILL of the dynamic
    provider process while it waits for the group to start (shim up, overlays mounted, the init
    container running, no record yet). The group's supervisor sees its starter gone and stops
    it, so a `pulumi destroy` right away (which never starts the provider: the stack holds
    nothing) leaves no process or mount; the next `up` removes the directory and state the
    killed attempt left and makes the group; destroy then leaves nothing at all."""
    project = tmp_path / "slow-start"
    project.mkdir()
    (project / "__main__.py").write_text(SLOW_START)
    (project / "Pulumi.yaml").write_text(
        "name: eci-slow-start\n"
        "runtime:\n  name: python\n  options:\n"
        f"    toolchain: pip\n    virtualenv: {Path(sys.executable).parents[1]}\n"
    )
    image = registry.runnable.references(registry.host)["job_ok"]
    stack = Stack(project_dir=project, work=tmp_path).init({"image": image, "warmUpSeconds": "600"})
    data = tmp_path / "eci-data"

    up = stack.start("up", "--yes", "--skip-preview")
    # Read-only views: nothing the test does reconciles (only the provider's next run may).
    deadline = time.monotonic() + 120
    while True:
        assert up.poll() is None, (stack.work / "background.log").read_text()
        assert time.monotonic() < deadline, "the warm-up container never started"
        groups = LocalView(data).list_container_groups() if (data / "state.db").exists() else []
        if groups and groups[0].containers and groups[0].containers[0].state == "Running":
            break
        time.sleep(0.1)
    [starting] = groups
    assert starting.containers[0].name == "warm-up" and starting.status_reason.startswith(
        "being created by process"
    )
    owner = Runtime.reader(data / "groups", data / "state.db").state.group(starting.id).owner_pid
    providers = [pid for pid in descendants(up.pid) if b"pulumi.dynamic" in cmdline(pid)]
    assert providers == [owner], (providers, owner)
    os.kill(owner, signal.SIGKILL)
    assert up.wait(120) != 0
    killed = starting.id
    # `pulumi` itself ended (its provider died under it) and released the stack's lock.
    stack.run("destroy", "--yes", "--skip-preview")
    deadline = time.monotonic() + 30
    while traces([killed]):
        assert time.monotonic() < deadline, traces([killed])
        time.sleep(0.1)
    assert mounts_on_host(data) == []
    # Left for recovery: the directory and the runtime's state, shown for what they are.
    assert (data / "groups" / killed).is_dir()
    [left] = LocalView(data).list_container_groups()
    assert (left.id, left.status.value) == (killed, "Failed")
    assert left.status_reason.startswith(f"not recorded: process {owner} that started it")

    stack.run("config", "set", "warmUpSeconds", "0")
    again = stack.run("up", "--yes", "--skip-preview")
    assert "Traceback" not in again.stdout + again.stderr
    out = stack.outputs()
    assert out["status"] == "Running" and out["group_id"] != killed
    assert traces([killed]) == []
    assert not (data / "groups" / killed).exists()
    assert [g.id for g in LocalView(data).list_container_groups()] == [out["group_id"]]
    assert mounts_on_host(data) == []

    stack.run("destroy", "--yes", "--skip-preview")
    assert traces([killed, out["group_id"]]) == []
    assert list((data / "groups").iterdir()) == []
    assert LocalView(data).list_container_groups() == []
    assert Runtime.reader(data / "groups", data / "state.db").group_ids() == []
    assert mounts_on_host(data) == []


def test_pulumi_killed_before_saving_a_running_group_then_up_adopts_it(
    pulumi_bin: Path, tmp_path: Path, registry: Registry
) -> None:
    """`pulumi up` of a group whose init container takes a moment. `pulumi` is stopped while
    the group starts (so it saves nothing more), its provider goes on until the group runs and
    is recorded, then `pulumi` is SIGKILLed: the stack holds a pending create and no group.
    After `pulumi cancel` (the file backend keeps the dead run's lock), `pulumi up` adopts the
    running group through the create's token: one group, recorded, running and in state; destroy
    then leaves no process, mount, directory or row."""
    project = tmp_path / "slow-start"
    project.mkdir()
    (project / "__main__.py").write_text(SLOW_START)
    (project / "Pulumi.yaml").write_text(
        "name: eci-slow-start\n"
        "runtime:\n  name: python\n  options:\n"
        f"    toolchain: pip\n    virtualenv: {Path(sys.executable).parents[1]}\n"
    )
    image = registry.runnable.references(registry.host)["job_ok"]
    stack = Stack(project_dir=project, work=tmp_path).init({"image": image, "warmUpSeconds": "2"})
    data = tmp_path / "eci-data"

    up = stack.start("up", "--yes", "--skip-preview")
    left: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while True:
            assert up.poll() is None, (stack.work / "background.log").read_text()
            assert time.monotonic() < deadline, "the warm-up container never started"
            view = LocalView(data) if (data / "state.db").exists() else None
            groups = view.list_container_groups() if view else []
            if groups and groups[0].containers and groups[0].containers[0].state == "Running":
                break
            time.sleep(0.05)
        os.kill(up.pid, signal.SIGSTOP)  # from here `pulumi` saves nothing
        [starting] = groups
        assert starting.status_reason.startswith("being created by process")
        deadline = time.monotonic() + 60
        while True:  # the provider goes on: the group runs and is recorded
            group = LocalView(data).get_container_group(starting.id)
            if group.status.value == "Running" and not group.status_reason:
                break
            assert time.monotonic() < deadline, group
            time.sleep(0.05)
        left = descendants(up.pid)
        os.kill(up.pid, signal.SIGKILL)
        up.wait()
        stack.run("cancel", "--yes")
        saved = stack.state()
        assert not [r for r in saved.get("resources", []) if r["urn"].endswith("::slow-start")]
        assert saved.get("pending_operations")

        again = stack.run("up", "--yes", "--skip-preview")
        assert "Traceback" not in again.stdout + again.stderr
        out = stack.outputs()
        assert (out["group_id"], out["status"]) == (starting.id, "Running")
        [in_state] = [r for r in stack.state()["resources"] if r["urn"].endswith("::slow-start")]
        assert in_state["id"] == starting.id
        assert [g.id for g in LocalView(data).list_container_groups()] == [starting.id]
        assert Runtime.reader(data / "groups", data / "state.db").group_ids() == [starting.id]
    finally:
        for pid in left or descendants(up.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(up.pid, signal.SIGKILL)

    stack.run("destroy", "--yes", "--skip-preview")
    assert traces([starting.id]) == []
    assert list((data / "groups").iterdir()) == []
    assert LocalView(data).list_container_groups() == []
    assert Runtime.reader(data / "groups", data / "state.db").group_ids() == []
    assert mounts_on_host(data) == []
