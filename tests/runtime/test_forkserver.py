"""Shims forked by the fork server, through the real path (real crun, overlay mounts,
namespaces): isolation per group in a burst, groups outliving their starter, a killed server
replaced, and no descriptor leaking into shims or containers (checked against /proc)."""

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from eci_imagecache.runtime import forkserver, host
from eci_imagecache.runtime.bundle import ContainerSettings
from eci_imagecache.runtime.supervisor import ContainerRun, Runtime

from .test_supervisor import SH, ended, leftovers

BURST = 8


def run(layer: str, name: str, script: str) -> ContainerRun:
    return ContainerRun(
        ContainerSettings(name=name, command=["/bin/sh", "-c", script]), SH, [layer]
    )


def container_pid(runtime: Runtime, group_id: str, name: str = "main") -> int:
    return int((runtime.groups_dir / group_id / "containers" / name / "pid").read_text())


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def session(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[3])


def descriptors(pid: int) -> dict[int, str]:
    """What each open descriptor of ``pid`` points to."""
    found = {}
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            found[int(fd.name)] = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
    return found


def forked(pid: int) -> bool:
    """Whether ``pid`` is a shim the fork server made (it runs the server's program)."""
    return "eci_imagecache.runtime.forkserver" in cmdline(pid)


def test_a_burst_of_groups_all_run_each_isolated_in_shims_of_the_fork_server(
    runtime, busybox_layer
):
    ids = [f"grp-burst-{i}" for i in range(BURST)]

    def start(group_id: str):
        return runtime.start(group_id, group_id, [run(busybox_layer, "main", "sleep 60")])

    with ThreadPoolExecutor(BURST) as pool:
        groups = list(pool.map(start, ids))
    assert [g.status for g in groups] == ["Running"] * BURST
    shims = [g.shim_pid for g in groups]
    assert len(set(shims)) == BURST
    containers = [container_pid(runtime, g) for g in ids]
    for shim, container in zip(shims, containers, strict=True):
        assert forked(shim)
        # Reparented at once: neither this process nor the server is its parent; it leads its
        # own session (which a stop kills).
        assert parent(shim) not in (os.getpid(), forkserver.server_pid())
        assert session(shim) == shim
        assert host.alive(container)
    namespaces = {
        kind: {os.readlink(f"/proc/{pid}/ns/{kind}") for pid in containers}
        for kind in ("net", "mnt")
    }
    own = {kind: os.readlink(f"/proc/self/ns/{kind}") for kind in ("net", "mnt")}
    for kind, seen in namespaces.items():
        assert len(seen) == BURST and own[kind] not in seen, kind
    for group_id, pid in zip(ids, containers, strict=True):
        # Its own cgroup (the runtime's path for the group, the container's below it).
        assert f"/{group_id}/main" in Path(f"/proc/{pid}/cgroup").read_text()
    for group_id in ids:
        runtime.stop(group_id)
        assert leftovers(group_id) == []


STARTER = """
import sys
from pathlib import Path
from eci_imagecache.runtime.bundle import ContainerSettings
from eci_imagecache.runtime.layers import LayerStore
from eci_imagecache.runtime.supervisor import ContainerRun, Runtime

root, layer = Path(sys.argv[1]), sys.argv[2]
runtime = Runtime(root / "groups", root / "state.db", LayerStore(root / "layers"))
settings = ContainerSettings(name="main", command=["/bin/sh", "-c", "sleep 300"])
config = {"config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]}}
group = runtime.start("grp-outlives", "outlives", [ContainerRun(settings, config, [layer])])
runtime.adopt("grp-outlives")  # recorded by its backend: kept when its starter ends
print(group.status, group.shim_pid)
"""


def test_a_group_runs_on_after_the_process_that_started_it_ends(tmp_path, runtime, busybox_layer):
    done = subprocess.run(
        [sys.executable, "-c", STARTER, str(tmp_path), busybox_layer],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    status, shim = done.stdout.split()
    assert status == "Running" and forked(int(shim))
    time.sleep(1.5)  # the shim checks for an abandoned group every 0.2 s
    group = runtime.group("grp-outlives")
    assert group.status == "Running" and group.shim_pid == int(shim)
    assert host.alive(int(shim)) and host.alive(container_pid(runtime, "grp-outlives"))
    runtime.stop("grp-outlives")
    assert leftovers("grp-outlives") == []


LIMITED = """
import os, resource, sys
resource.setrlimit(resource.RLIMIT_NPROC, (4321, resource.getrlimit(resource.RLIMIT_NPROC)[1]))
os.umask(0o027)
""" + STARTER.replace("grp-outlives", "grp-limited")


def limit(pid: int, name: str) -> str:
    line = next(x for x in Path(f"/proc/{pid}/limits").read_text().splitlines() if name in x)
    return line.split()[len(name.split())]  # the soft limit


def umask(pid: int) -> str:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next(x for x in status if x.startswith("Umask:")).split()[1]


def test_a_shim_has_its_requester_s_limits_and_umask_not_the_server_s(
    tmp_path, runtime, busybox_layer
):
    runtime._warmed.wait(15)
    assert forkserver.server_pid() is not None  # started by this process, with its limits
    assert limit(os.getpid(), "Max processes") != "4321"
    done = subprocess.run(
        [sys.executable, "-c", LIMITED, str(tmp_path), busybox_layer],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    status, shim = done.stdout.split()
    assert status == "Running" and forked(int(shim))
    container = container_pid(runtime, "grp-limited")
    for pid in (int(shim), container):
        assert limit(pid, "Max processes") == "4321"
    assert umask(int(shim)) == "0027"
    runtime.stop("grp-limited")
    assert leftovers("grp-limited") == []


def test_a_killed_fork_server_is_replaced_and_its_shims_run_on(runtime, busybox_layer):
    first = runtime.start("grp-before", "before", [run(busybox_layer, "main", "sleep 60")])
    server = forkserver.server_pid()
    assert server is not None and forked(first.shim_pid)
    os.kill(server, signal.SIGKILL)
    assert ended(server)
    # The shim kept ready came from the killed server: let it go, so the next start asks.
    assert runtime._ready is not None
    runtime._ready.close()
    runtime._ready = None
    second = runtime.start("grp-after", "after", [run(busybox_layer, "main", "sleep 60")])
    assert second.status == "Running" and forked(second.shim_pid)
    replacement = forkserver.server_pid()
    assert replacement not in (None, server)
    group = runtime.group("grp-before")  # killing the server killed none of its shims
    assert group.status == "Running" and host.alive(container_pid(runtime, "grp-before"))
    for group_id in ("grp-before", "grp-after"):
        runtime.stop(group_id)
        assert leftovers(group_id) == []


def test_an_idle_fork_server_ends_and_the_next_start_starts_another(
    runtime, busybox_layer, monkeypatch
):
    forkserver.stop_server()
    monkeypatch.setenv("ECI_IMAGECACHE_FORKSERVER_IDLE", "1")  # the server started next
    runtime._warmed.wait(15)
    if runtime._ready is not None:
        runtime._ready.close()
        runtime._ready = None
    first = runtime.start("grp-idle-a", "a", [run(busybox_layer, "main", "sleep 60")])
    server = forkserver.server_pid()
    assert forked(first.shim_pid) and server is not None
    assert ended(server, timeout=10)  # idle for a second
    runtime._ready.close()
    runtime._ready = None
    second = runtime.start("grp-idle-b", "b", [run(busybox_layer, "main", "sleep 60")])
    assert second.status == "Running" and forked(second.shim_pid)
    assert forkserver.server_pid() not in (None, server)
    for group_id in ("grp-idle-a", "grp-idle-b"):
        assert runtime.group(group_id).status == "Running"
        runtime.stop(group_id)
        assert leftovers(group_id) == []


def test_a_fork_server_that_does_not_answer_is_given_up_for_programs(
    runtime, busybox_layer, monkeypatch
):
    monkeypatch.setattr(forkserver, "ANSWER_SECONDS", 1.0)
    monkeypatch.setattr(forkserver, "_given_up_until", 0.0)  # restored: later tests ask again
    runtime._warmed.wait(15)
    assert runtime._ready is not None
    runtime._ready.close()  # the next start asks the server
    runtime._ready = None
    server = forkserver.server_pid()
    assert server is not None
    os.kill(server, signal.SIGSTOP)  # it takes connections (the kernel does) and answers none
    try:
        began = time.monotonic()
        group = runtime.start("grp-hung", "hung", [run(busybox_layer, "main", "sleep 60")])
        assert time.monotonic() - began < 10
        assert group.status == "Running"
        assert "eci_imagecache.runtime.shim" in cmdline(group.shim_pid)
    finally:
        os.kill(server, signal.SIGCONT)
    # The request it took late makes a shim that ends at once (its requester let go).
    runtime.stop("grp-hung")
    assert leftovers("grp-hung") == []


def test_without_a_fork_server_shims_start_as_programs(
    tmp_path, runtime, layers, busybox_layer, monkeypatch
):
    monkeypatch.setenv("ECI_IMAGECACHE_FORKSERVER_IDLE", "0")
    runtime = Runtime(tmp_path / "program" / "groups", tmp_path / "program" / "state.db", layers)
    group = runtime.start("grp-program", "program", [run(busybox_layer, "main", "sleep 60")])
    assert group.status == "Running"
    assert "eci_imagecache.runtime.shim" in cmdline(group.shim_pid)
    runtime.stop("grp-program")
    assert leftovers("grp-program") == []


def test_no_descriptor_leaks_into_shims_containers_or_the_server(runtime, busybox_layer):
    # Two groups at once: neither shim may hold the other's descriptors, or the server's.
    with ThreadPoolExecutor(2) as pool:
        groups = list(
            pool.map(
                lambda g: runtime.start(g, g, [run(busybox_layer, "main", "sleep 60")]),
                ["grp-fd-a", "grp-fd-b"],
            )
        )
    for group in groups:
        assert group.status == "Running" and forked(group.shim_pid)
        container = descriptors(container_pid(runtime, group.id))
        # The container: its standard descriptors only (stdin from /dev/null, output to the
        # shim's log pump).
        assert sorted(container) == [0, 1, 2], container
        assert container[0] == "/dev/null"
        shim = descriptors(group.shim_pid)
        # No socket (its group publishes no port, and its channel is closed once used), nothing
        # of the other group's.
        assert [t for t in shim.values() if t.startswith("socket:")] == [], shim
        other = next(g for g in groups if g.id != group.id)
        assert [t for t in shim.values() if other.id in t] == [], shim
    server = forkserver.server_pid()
    assert server is not None
    # Asking for its pid was a connection too: it is closed once the server has seen it end.
    deadline = time.monotonic() + 5
    while len(held := descriptors(server)) > 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    # The server: the standard three (/dev/null) and its listening socket, nothing of its
    # clients'.
    assert [held.pop(fd) for fd in (0, 1, 2)] == ["/dev/null"] * 3
    assert len(held) == 1 and next(iter(held.values())).startswith("socket:"), held
    for group in groups:
        runtime.stop(group.id)
        assert leftovers(group.id) == []
