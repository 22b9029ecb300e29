"""Groups run by real crun on real overlay mounts: states, exit codes, restart policy, logs,
ports, stopping, and what a killed supervisor leaves (checked against /proc, /run/crun)."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from eci_imagecache.runtime import host
from eci_imagecache.runtime.bundle import ContainerSettings
from eci_imagecache.runtime.supervisor import (
    ContainerRun,
    Runtime,
    RuntimeUnavailable,
    StartError,
)
from eci_imagecache.testing.registry import free_port

from ..conftest import shim_processes

SH = {"config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]}}


def job(name: str, script: str, **kw) -> ContainerRun:
    return ContainerRun(
        ContainerSettings(name=name, command=["/bin/sh", "-c", script], **kw),
        SH,
        kw.pop("layers", None) or [],
    )


def run(layer: str, name: str, script: str, init: bool = False, **kw) -> ContainerRun:
    settings = ContainerSettings(name=name, command=["/bin/sh", "-c", script], **kw)
    return ContainerRun(settings, SH, [layer], init=init)


def wait_for(runtime: Runtime, group_id: str, *statuses: str, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        group = runtime.group(group_id)
        if group and group.status in statuses:
            return group
        time.sleep(0.05)
    raise AssertionError(f"{group_id} never reached {statuses}: {runtime.group(group_id)}")


def leftovers(group_id: str) -> list[str]:
    """Processes, mounts (in any mount namespace) and crun state that mention the group."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            mounts = (proc / "mountinfo").read_text()
        except OSError:
            continue
        if group_id in cmdline:
            found.append(f"process {proc.name}: {cmdline}")
        if group_id in mounts:
            found.append(f"mount seen by process {proc.name}")
    if any(p.name.startswith(group_id) for p in Path("/run/crun").glob("*")):
        found.append("crun state")
    return found


def test_jobs_end_with_their_exit_codes(runtime, busybox_layer):
    ok = runtime.start("grp-ok", "ok", [run(busybox_layer, "main", "echo hello; exit 0")], "Never")
    bad = runtime.start("grp-bad", "bad", [run(busybox_layer, "main", "exit 3")], "Never")
    ok = wait_for(runtime, "grp-ok", "Succeeded", "Failed")
    bad = wait_for(runtime, "grp-bad", "Succeeded", "Failed")
    assert (ok.status, ok.containers[0].state, ok.containers[0].exit_code) == (
        "Succeeded",
        "Terminated",
        0,
    )
    assert (bad.status, bad.containers[0].exit_code) == ("Failed", 3)
    assert runtime.logs("grp-ok", "main") == b"hello\n"
    assert ok.first_process_seconds is not None and ok.first_process_seconds >= 0


def test_a_server_answers_on_its_port_and_stops_leaving_nothing(runtime, busybox_layer):
    port = free_port()
    script = (
        "mkdir -p /tmp/www && echo served-from-container > /tmp/www/index.html && "
        f"exec httpd -f -p {port} -h /tmp/www"
    )
    group = runtime.start("grp-web", "web", [run(busybox_layer, "web", script, ports=[port])])
    assert group.status == "Running" and group.containers[0].state == "Running"
    deadline = time.monotonic() + 10
    while True:
        try:
            response = httpx.get(f"http://{group.address}:{port}/", timeout=1)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert response.text == "served-from-container\n"
    assert leftovers("grp-web")  # the check sees a running group
    # httpd as PID 1 ignores SIGTERM: the stop needs the SIGKILL after the grace period.
    started = time.monotonic()
    runtime.stop("grp-web", grace=0.5)
    assert time.monotonic() - started >= 0.5
    assert leftovers("grp-web") == []
    assert not (runtime.groups_dir / "grp-web").exists()
    assert runtime.group("grp-web") is None


def test_init_containers_run_first_and_a_failing_one_fails_the_group(runtime, busybox_layer):
    group = runtime.start(
        "grp-init",
        "init",
        [
            run(busybox_layer, "setup", "echo init-ran", init=True),
            run(busybox_layer, "main", "echo main-ran"),
        ],
        "Never",
    )
    group = wait_for(runtime, "grp-init", "Succeeded", "Failed")
    assert group.status == "Succeeded"
    assert runtime.logs("grp-init", "setup") == b"init-ran\n"
    runtime.start(
        "grp-init-bad",
        "init-bad",
        [run(busybox_layer, "setup", "exit 7", init=True), run(busybox_layer, "main", "true")],
        "Never",
    )
    bad = wait_for(runtime, "grp-init-bad", "Succeeded", "Failed")
    assert bad.status == "Failed" and "exited with code 7" in bad.reason
    assert bad.containers[1].started_at is None


def test_restart_policy_on_failure_restarts_until_success(runtime, busybox_layer, tmp_path):
    # The upper directory keeps the container's writes across restarts: count the attempts.
    script = "n=$(cat /tmp/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /tmp/n; [ $n -ge 3 ]"
    runtime.start("grp-retry", "retry", [run(busybox_layer, "main", script)], "OnFailure")
    group = wait_for(runtime, "grp-retry", "Succeeded", "Failed", timeout=30)
    assert group.status == "Succeeded"
    assert group.containers[0].restart_count == 2
    runtime.start("grp-never", "never", [run(busybox_layer, "main", "exit 1")], "Never")
    assert wait_for(runtime, "grp-never", "Failed").containers[0].restart_count == 0


def test_logs_are_bounded(tmp_path, layers, busybox_layer):
    runtime = Runtime(tmp_path / "g2", tmp_path / "s2.db", layers, log_limit=4096)
    script = "i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done"
    runtime.start("grp-logs", "logs", [run(busybox_layer, "main", script)], "Never")
    wait_for(runtime, "grp-logs", "Succeeded")
    logs = runtime.logs("grp-logs", "main")
    assert len(logs) <= 2 * 4096
    assert logs.endswith(b"line-1999\n")
    runtime.stop("grp-logs")


def test_memory_limit_reaches_the_cgroup(runtime, busybox_layer):
    if "memory" not in host.cgroup_controllers():
        pytest.skip("the kernel offers no memory controller here")
    script = "cat /proc/self/cgroup"
    runtime.start("grp-mem", "mem", [run(busybox_layer, "main", script, memory_gib=0.25)], "Never")
    wait_for(runtime, "grp-mem", "Succeeded")
    config = (runtime.groups_dir / "grp-mem/containers/main/config.json").read_text()
    assert '"limit": 268435456' in config


def test_a_container_crun_cannot_start_ends_the_wait_with_crun_s_reason(runtime, busybox_layer):
    """crun ends without writing the pid file (here: a 1-byte memory limit fails the setup): the
    start returns at once with crun's words, instead of waiting for a process that never runs."""
    if "memory" not in host.cgroup_controllers():
        pytest.skip("the kernel offers no memory controller here")
    tiny = 1 / (1 << 30)  # one byte
    started = time.monotonic()
    group = runtime.start(
        "grp-oom", "oom", [run(busybox_layer, "main", "true", memory_gib=tiny)], "Never"
    )
    assert time.monotonic() - started < 20
    [container] = group.containers
    assert (group.status, container.state, container.started_at) == ("Failed", "Terminated", None)
    assert container.reason.startswith("did not start: ") and "memory" in container.reason
    runtime.stop("grp-oom")
    assert leftovers("grp-oom") == []


def test_a_killed_supervisor_fails_the_group_and_cleanup_still_works(runtime, busybox_layer):
    group = runtime.start("grp-kill", "kill", [run(busybox_layer, "main", "exec sleep 600")])
    assert group.status == "Running"
    runtime.adopt("grp-kill")
    os.kill(group.shim_pid, signal.SIGKILL)
    failed = wait_for(runtime, "grp-kill", "Failed")
    assert "ended unexpectedly" in failed.reason
    assert leftovers("grp-kill")  # the container still runs, and holds its mount
    # ...and says so, until it ends (then nobody saw its exit code).
    [container] = failed.containers
    assert container.state == "Running" and container.reason.startswith("running unsupervised")
    pid = int((runtime.groups_dir / "grp-kill/containers/main/pid").read_text())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (ended := runtime.group("grp-kill").containers[0]).state != "Terminated":
        assert time.monotonic() < deadline, ended
        time.sleep(0.05)
    assert ended.reason == "ended unsupervised (exit code unknown)" and ended.finished_at
    removed = runtime.reconcile(known=lambda group_id: False)
    assert removed == ["grp-kill"]
    assert leftovers("grp-kill") == []


def test_a_stop_while_an_init_container_runs_stops_it_with_sigterm(runtime, busybox_layer):
    """SIGTERM reaches the init container: the supervisor ends without waiting it out."""
    script = "trap 'echo stopped by TERM; exit 0' TERM; sleep 600 & wait"
    group = runtime.start(
        "grp-warm",
        "warm",
        [run(busybox_layer, "warm-up", script, init=True), run(busybox_layer, "main", "true")],
        wait=False,
    )
    deadline = time.monotonic() + 20
    while runtime.group("grp-warm").containers[0].state != "Running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(group.shim_pid or runtime.group("grp-warm").shim_pid, signal.SIGTERM)
    deadline = time.monotonic() + 15  # the grace period (2 s) and then some
    while host.alive(runtime.group("grp-warm").shim_pid):
        assert time.monotonic() < deadline, "the supervisor waited for its init container"
        time.sleep(0.05)
    warm_up, main = runtime.group("grp-warm").containers
    assert (warm_up.state, warm_up.exit_code, warm_up.reason) == ("Terminated", 0, "stopped")
    assert runtime.logs("grp-warm", "warm-up") == b"stopped by TERM\n"
    assert main.started_at is None  # nothing ran after it
    assert leftovers("grp-warm") == []  # no process, mount or crun state
    runtime.stop("grp-warm")
    assert not (runtime.groups_dir / "grp-warm").exists()


def test_a_group_being_started_by_a_live_process_is_left_alone(runtime, busybox_layer):
    runtime.start("grp-young", "young", [run(busybox_layer, "main", "exec sleep 600")])
    assert runtime.reconcile(known=lambda group_id: False) == []
    assert runtime.group("grp-young").status == "Running"


def test_reconcile_keeps_claimed_groups_and_removes_orphans(runtime, busybox_layer):
    runtime.start("grp-keep", "keep", [run(busybox_layer, "main", "exec sleep 600")])
    runtime.adopt("grp-keep")
    runtime.start("grp-orphan", "orphan", [run(busybox_layer, "main", "exec sleep 600")])
    runtime.adopt("grp-orphan")
    assert runtime.reconcile(known=lambda group_id: group_id == "grp-keep") == ["grp-orphan"]
    assert runtime.group("grp-keep").status == "Running"
    assert leftovers("grp-orphan") == []


def test_no_runtime_means_a_clear_refusal(tmp_path, layers, monkeypatch):
    monkeypatch.setenv("ECI_IMAGECACHE_CRUN", str(tmp_path / "no-such-crun"))
    runtime = Runtime(tmp_path / "g3", tmp_path / "s3.db", layers)
    with pytest.raises(RuntimeUnavailable, match="crun"):
        runtime.start("grp-none", "none", [])


# shims started ahead of need ------------------------------------------------------------------


def shims_of(groups_dir: Path) -> list[int]:
    """Shim processes serving groups under ``groups_dir`` (ready or running)."""
    return shim_processes(groups_dir.parent)


def ended(pid: int, timeout: float = 10) -> bool:
    """Whether ``pid`` (not a child of this process) ends within ``timeout``."""
    deadline = time.monotonic() + timeout
    while host.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not host.alive(pid)


def test_the_next_group_starts_on_the_shim_kept_ready(runtime, busybox_layer):
    runtime.start("grp-first", "first", [run(busybox_layer, "main", "sleep 30")])
    ready = runtime._ready
    assert ready is not None
    # Found once it has opened the state (it gets ready in the background).
    deadline = time.monotonic() + 5
    while ready.pid not in shims_of(runtime.groups_dir):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    runtime.start("grp-second", "second", [run(busybox_layer, "main", "sleep 30")])
    assert runtime.group("grp-second").shim_pid == ready.pid
    assert (runtime.groups_dir / "grp-second" / "shim.log").exists()  # its output goes there
    for group_id in ("grp-first", "grp-second"):
        runtime.stop(group_id)
        assert leftovers(group_id) == []


def test_a_ready_shim_ends_with_the_process_that_started_it(tmp_path, layers):
    # A process keeps a shim ready, then ends without a group for it: the shim ends too.
    groups = tmp_path / "groups"
    script = (
        "import sys; from pathlib import Path; "
        "from eci_imagecache.runtime.layers import LayerStore; "
        "from eci_imagecache.runtime.supervisor import Runtime; "
        f"rt = Runtime(Path({str(groups)!r}), Path({str(tmp_path / 'state.db')!r}), "
        f"LayerStore(Path({str(layers.root)!r}))); rt.ready(); print(rt._ready.pid)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout)
    deadline = time.monotonic() + 10
    while host.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not host.alive(pid)
    assert shims_of(groups) == []


def test_a_ready_shim_whose_store_was_removed_ends_without_making_it_again(tmp_path, layers):
    data = tmp_path / "data"
    runtime = Runtime(data / "groups", data / "state.db", layers)
    shutil.rmtree(data)  # removed before the shim opens it
    runtime.ready()
    shim = runtime._ready
    assert shim is not None
    assert ended(shim.pid)  # by itself: nothing to run
    assert not data.exists()


def test_a_ready_shim_runs_only_a_group_of_its_own_directory(tmp_path, layers):
    runtime = Runtime(tmp_path / "groups", tmp_path / "state.db", layers)
    runtime.ready()
    shim = runtime._ready
    assert shim is not None
    elsewhere = tmp_path / "elsewhere" / "grp-x"
    elsewhere.mkdir(parents=True)
    shim.run(elsewhere).close()
    assert ended(shim.pid)
    assert not (elsewhere / "shim.log").exists()


def test_a_group_that_cannot_be_described_leaves_the_shim_ready_and_names_none(
    runtime, busybox_layer
):
    runtime.ready()
    ready = runtime._ready
    assert ready is not None
    missing_program = ContainerRun(
        ContainerSettings(name="main", command=["/no/such/program"]), SH, [busybox_layer]
    )
    with pytest.raises(StartError, match="not in the image"):
        runtime.start("grp-bad", "bad", [missing_program])
    failed = runtime.group("grp-bad")
    assert failed.status == "Failed" and failed.shim_pid is None  # no shim had it
    assert runtime._ready is ready and host.alive(ready.pid)
    group = runtime.start("grp-good", "good", [run(busybox_layer, "main", "sleep 30")])
    assert group.status == "Running" and group.shim_pid == ready.pid
    for group_id in ("grp-bad", "grp-good"):
        runtime.stop(group_id)
        assert leftovers(group_id) == []


def test_a_shim_announced_ahead_runs_the_group_or_stays_ready(runtime, busybox_layer):
    runtime.ready()
    ready = runtime._ready
    assert ready is not None
    with runtime.expecting():  # e.g. the images' preparation fails: no start comes
        assert runtime._ready is None  # taken, and told a group is on its way
    assert runtime._ready is ready and host.alive(ready.pid)  # ready again, for the next
    with runtime.expecting():
        group = runtime.start("grp-expected", "expected", [run(busybox_layer, "main", "sleep 30")])
    assert group.status == "Running" and group.shim_pid == ready.pid
    runtime.stop("grp-expected")
    assert leftovers("grp-expected") == []


def test_crun_is_read_only_in_the_shim_s_mount_namespace_and_nowhere_else(runtime, busybox_layer):
    group = runtime.start("grp-ro", "ro", [run(busybox_layer, "main", "sleep 30")])
    crun = os.path.realpath(host.crun_binary() or "crun")

    def mount_options(pid: int | str) -> list[str]:
        """Options of mounts at crun's path in the mount namespace of ``pid``."""
        found = []
        for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
            fields = line.split()
            if fields[4] == crun:
                found.append(fields[5])
        return found

    assert [o.split(",")[0] for o in mount_options(group.shim_pid)] == ["ro"]
    assert mount_options("self") == []  # the host's namespace has none
    runtime.stop("grp-ro")
    assert leftovers("grp-ro") == []


def test_a_group_starts_when_the_shim_kept_ready_was_killed(runtime, busybox_layer):
    runtime.ready()
    ready = runtime._ready
    assert ready is not None
    os.kill(ready.pid, signal.SIGKILL)
    assert ended(ready.pid)
    group = runtime.start("grp-after", "after", [run(busybox_layer, "main", "sleep 30")])
    assert group.status == "Running" and group.shim_pid != ready.pid
    runtime.stop("grp-after")
    assert leftovers("grp-after") == []
