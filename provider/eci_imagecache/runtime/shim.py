"""The shim: one long-lived process per container group, started in its own mount namespace.

Forked by the fork server (``forkserver``: ``serve`` below), or started as ``python -S -m
eci_imagecache.runtime.shim <groups dir> <state db> <notify fd> <group fd> [<crun>]`` where no
fork server answers; either way it is started before its group is (see
``supervisor.ReadyShim``), is named ``eci-shim`` (``/proc/<pid>/comm``) and gets ready
meanwhile: it moves into a private mount namespace and a new network namespace (unshare(2);
the group's network, see ``network``), where it lays out what every group needs (crun
read-only, see ``Ready``), and opens the state. Then it waits for its group's directory and
published listeners, and relays their connections into the group (``network.Forwarder``).
It mounts each container's overlay, runs the init containers in order and then the
containers with ``crun run``, records every state change, applies the restart policy, pumps
each container's output into a bounded log, and on SIGTERM stops the containers (SIGTERM, then
SIGKILL after the grace period) and unmounts.

Limits: the group's containers run in its cgroup (made by the starter; removed here when the
group ends). A container killed at a memory limit ends ``OOMKilled``. The group's writable
layers are measured every ``STORAGE_INTERVAL`` seconds; past the group's ephemeral storage the
group is evicted, as kubelet evicts a pod: its containers are killed, it is Failed with the
reason, and their writable layers are removed.

The overlay mounts live in the shim's mount namespace only: they are never visible on the host,
and they vanish with the last process of the group, even if the shim itself is killed.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from . import cgroups, host, network
from .state import (
    CONTAINER_RUNNING,
    FAILED,
    TERMINATED,
    WAITING,
    RuntimeState,
    now,
)

BACKOFF_START, BACKOFF_MAX = 0.5, 30.0
RESTART = -(1 << 30)  # run_once's answer when the container is to run again
STORAGE_INTERVAL = 1.0  # seconds between two measures of the writable layers
GIB, MIB = 1 << 30, 1 << 20
IDLE_AFTER = 0.05  # seconds without a message before a ready shim does its idle work
PROCESS_NAME = "eci-shim"  # what ps and /proc/<pid>/comm show for a shim


class BoundedLog:
    """A container's output: ``<name>.log`` and, once it outgrows ``limit``, one older part."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit
        self.lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self.lock:
            size = self.path.stat().st_size if self.path.exists() else 0
            if size and size + len(data) > self.limit:
                os.replace(self.path, self.path.with_suffix(".log.1"))
            with open(self.path, "ab") as out:
                out.write(data[-self.limit :])

    @staticmethod
    def read(path: Path, tail: int | None = None) -> bytes:
        parts = [p for p in (path.with_suffix(".log.1"), path) if p.exists()]
        data = b"".join(p.read_bytes() for p in parts)
        return data if tail is None else data[max(0, len(data) - tail) :]


# crun's guard against a container overwriting it through /proc/self/exe: unless crun runs
# from a read-only mount that its caller made (this variable says so), each crun run first
# makes one (a temporary file bind-mounted read-only) and executes itself again from it.
CLONED_BINARY = "_LIBCONTAINER_CLONED_BINARY"
WARM_SECONDS = 2.0  # cgroup moves are kept warm at most this long after a group is announced


class Ready:
    """What a shim lays out before it has a group (off every start's path).

    - On a cgroup v1 host that also mounts a v2 hierarchy holding controllers (crun refuses
      that layout), the v2 mount is dropped from the shim's mount namespace.
    - crun is bind-mounted over itself read-only, in the shim's mount namespace only, and runs
      with ``CLONED_BINARY`` set: crun then runs at once instead of making that mount itself
      and executing itself a second time (the protection is the same: a read-only mount).
    - The cgroup ``CgroupMoves`` keeps warm once a group is announced (``warm``)."""

    def __init__(self, crun: str | None) -> None:
        self.error: OSError | None = None
        self.crun: str | None = None
        try:
            if host.cgroup_hybrid():
                host.unmount(Path(host.UNIFIED))
        except OSError as err:
            self.error = err
        if crun:
            try:
                host.read_only_bind(crun)
            except OSError as err:
                print(f"shim: crun runs as it is: {err}", file=sys.stderr)
            else:
                self.crun = crun
        self.procs = host.own_cgroup_procs()
        self.moves: host.CgroupMoves | None = None
        self.warming: threading.Thread | None = None

    def warm(self) -> None:
        """A group is on its way: keep cgroup moves warm until its containers have started
        (again, when an earlier announcement's warming has run out)."""
        if self.procs is None or (self.warming is not None and self.warming.is_alive()):
            return
        self.moves = host.CgroupMoves(self.procs)
        self.warming = threading.Thread(target=self.moves.keep, args=(WARM_SECONDS,), daemon=True)
        self.warming.start()

    def settled(self) -> None:
        """The group's containers have started (or will not): no more moves to warm."""
        if self.moves is not None:
            self.moves.stop.set()

    def env(self, crun: str) -> dict[str, str] | None:
        """crun's environment: None (this process's) unless ``crun`` is the one made
        read-only."""
        if self.crun is None or os.path.realpath(crun) != self.crun:
            return None
        return {**os.environ, CLONED_BINARY: "1"}


class Shim:
    def __init__(
        self,
        group_dir: Path,
        state: RuntimeState,
        notify: int | None = None,
        ready: Ready | None = None,
        listeners: list[socket.socket] | None = None,
    ) -> None:
        self.dir = group_dir
        self.plan: dict[str, Any] = json.loads((group_dir / "plan.json").read_text())
        self.group_id: str = self.plan["group_id"]
        self.state = state
        self.crun: str = self.plan["crun"]
        self.ready = ready or Ready(None)
        self.crun_env = self.ready.env(self.crun)
        # Containers (not init) not started yet: cgroup moves are kept warm until none is left.
        self.starting = {c["name"] for c in self.plan["containers"] if not c["init"]}
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.procs: dict[str, subprocess.Popen] = {}
        self.mounted: list[Path] = []
        self.last_end: dict[str, str] = {}
        self.notify_fd = notify  # the starter waits on it: a byte at each start or end
        self.owner: int | None = self.plan.get("owner_pid")
        self.evicted: str | None = None  # why, once the group is evicted
        self.oom_events: cgroups.OomEvents | None = None
        # The group's published ports, bound on the host's side by its starter.
        self.forwarder = network.Forwarder(listeners or [])

    def notify(self) -> None:
        if self.notify_fd is None:
            return
        try:
            os.write(self.notify_fd, b".")
        except OSError:  # the starter has stopped listening
            os.close(self.notify_fd)
            self.notify_fd = None

    # set-up -------------------------------------------------------------------------------

    def mount_all(self) -> None:
        """Mount each container's overlay (its starter made the directories)."""
        layers = Path(self.plan["layers_dir"])
        for container in self.plan["containers"]:
            bundle = Path(container["bundle"])
            lower = container["lower"] or [str(self.dir / "empty")]
            host.mount_overlay(bundle / "rootfs", lower, bundle / "upper", bundle / "work", layers)
            self.mounted.append(bundle / "rootfs")

    def unmount_all(self) -> None:
        for target in reversed(self.mounted):
            try:
                host.unmount(target)
            except OSError as err:
                print(f"shim: {err}", file=sys.stderr)
        self.mounted.clear()

    # running ------------------------------------------------------------------------------

    def run_once(self, container: dict[str, Any], restarts: int = 0) -> int | None:
        """Run the container once; record how it ended, or that it restarts (one write, so
        the group never looks finished between an exit and its restart)."""
        name, crun_id = container["name"], container["crun_id"]
        bundle = Path(container["bundle"])
        pid_file = bundle / "pid"
        pid_file.unlink(missing_ok=True)
        log = BoundedLog(self.dir / "logs" / f"{name}.log", int(self.plan["log_limit"]))
        oom_before, own_oom = self.oom_kills(), None
        argv = [self.crun, "run", "--bundle", str(bundle), "--pid-file", str(pid_file), crun_id]
        with host.DirectoryWatch(bundle) as watch:  # before crun: its pid file is seen
            with self.lock:
                if self.stopping.is_set():
                    return None
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    env=self.crun_env,
                )
                self.procs[name] = proc
            assert proc.stdout is not None
            pump = threading.Thread(target=_pump, args=(proc.stdout, log), daemon=True)
            pump.start()
            started = _started(proc, pid_file, watch)
        self._settle(name)
        if started is not None:
            self.state.set_container(
                self.group_id,
                name,
                state=CONTAINER_RUNNING,
                started_at=started,
                finished_at=None,
                exit_code=None,
                # After a restart, why the previous run ended (Kubernetes' lastState).
                reason=self.last_end.get(name, ""),
                first_process=not container["init"],
            )
            self.notify()
            own_oom = self.container_oom_events(container)
        code = proc.wait()
        pump.join(5)
        with self.lock:
            self.procs.pop(name, None)
        subprocess.run(
            [self.crun, "delete", "--force", crun_id],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
            env=self.crun_env,
        )
        if code < 0 or code > 128:
            reason = f"killed by signal {-code if code < 0 else code - 128}"
        elif not pid_file.exists():
            reason = "did not start: " + BoundedLog.read(log.path, 400).decode(errors="replace")
        else:
            reason = "stopped" if self.stopping.is_set() else "exited"
        reason = self.limit_reason(code, oom_before, container, own_oom) or reason
        if own_oom is not None:
            own_oom.close()
        policy = self.plan["restart_policy"]
        restart = (
            not container["init"]
            and not self.stopping.is_set()
            and (policy == "Always" or (policy == "OnFailure" and code != 0))
        )
        if restart:
            delay = min(BACKOFF_MAX, BACKOFF_START * 2**restarts)
            self.last_end[name] = f"restarted; the previous run ended: {reason.strip()}"
            self.state.set_container(
                self.group_id,
                name,
                state=WAITING,
                exit_code=code,
                finished_at=now(),
                restart_count=restarts + 1,
                reason=f"restarting in {delay:g} s after exit code {code} ({policy})",
            )
            self.notify()
            self.stopping.wait(delay)
            return None if self.stopping.is_set() else RESTART
        self.state.set_container(
            self.group_id,
            name,
            state=TERMINATED,
            exit_code=code,
            finished_at=now(),
            reason=reason.strip(),
        )
        self.notify()
        return code

    def _settle(self, name: str) -> None:
        with self.lock:
            self.starting.discard(name)
            if self.starting:
                return
        self.ready.settled()

    def watch(self, container: dict[str, Any]) -> None:
        restarts = 0
        while self.run_once(container, restarts) == RESTART:
            restarts += 1

    def stop_containers(self) -> None:
        # An evicted group is killed at once (kubelet's hard eviction): writes go on meanwhile.
        grace = 0.0 if self.evicted else float(self.plan["grace_seconds"])
        with self.lock:
            running = list(self.procs.items())
        by_name = {c["name"]: c["crun_id"] for c in self.plan["containers"]}
        for name, _ in running:
            self._kill(by_name[name], "TERM")
        deadline = time.monotonic() + grace
        for name, proc in running:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._kill(by_name[name], "KILL")
                proc.wait()

    def _kill(self, crun_id: str, sig: str) -> None:
        subprocess.run(
            [self.crun, "kill", "--all", crun_id, sig],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
            env=self.crun_env,
        )

    def run(self) -> int:
        """Run the group (its starter recorded this process as its shim)."""
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        try:
            if self.ready.error is not None:
                raise self.ready.error
            self.mount_all()
            self.watch_memory()
            self.watch_storage()
        except OSError as err:
            self.ready.settled()
            self.forwarder.close()
            self.unmount_all()
            self.state.set_group(self.group_id, status=FAILED, reason=f"not started: {err}")
            self.notify()
            return 1
        self.forwarder.start()
        try:
            for container in self.plan["containers"]:
                if not container["init"]:
                    continue
                codes: list[int | None] = []
                self.supervise([lambda c=container, out=codes: out.append(self.run_once(c))])
                if self.stopping.is_set():
                    return 0  # stopped while an init container ran: nothing failed
                if codes[0] != 0:
                    self.state.set_group(
                        self.group_id,
                        status=FAILED,
                        reason=f"init container {container['name']} exited with code {codes[0]}",
                    )
                    return 1
            self.supervise(
                [lambda c=c: self.watch(c) for c in self.plan["containers"] if not c["init"]]
            )
            return 0
        finally:
            self.ready.settled()
            self.forwarder.close()
            self.unmount_all()
            self.release()

    def supervise(self, work: list[Any]) -> None:
        """Run each of ``work`` in a thread until all end; a stop request (SIGTERM) meanwhile
        stops the running containers (an init container too) and waits for the threads."""
        threads = [threading.Thread(target=w, daemon=True) for w in work]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            if self.stopping.wait(0.2) or self.abandoned():
                self.stopping.set()
                self.stop_containers()
                for thread in threads:
                    thread.join()

    def abandoned(self) -> bool:
        """Whether the process that started the group died before recording it (it never
        adopted the group): then nothing will ever show or delete the group, and the shim stops
        it, saying why (recovery removes what is left: the directory and the state)."""
        if self.owner is None or host.alive(self.owner):
            return False
        group = self.state.group(self.group_id)
        if group is None or group.owner_pid is None:
            self.owner = None  # recorded and adopted: the backend owns it now
            return False
        self.state.set_group(
            self.group_id,
            status=FAILED,
            reason=f"stopped: process {self.owner} that started it ended before recording it",
        )
        self.notify()
        return True

    # limits -------------------------------------------------------------------------------

    def oom_kills(self) -> int | None:
        """How many times the group has been out of memory so far (None: unknown)."""
        with self.lock:
            return self.oom_events.count() if self.oom_events is not None else None

    def container_oom_events(self, container: dict[str, Any]) -> cgroups.OomEvents | None:
        """Out-of-memory events of a running container's own cgroup, when it has a memory
        limit (crun made its cgroup as it started it)."""
        if not (self.plan.get("cgroup") and container.get("memory_gib")):
            return None
        try:
            return cgroups.OomEvents(f"{self.plan['cgroup']}/{container['name']}")
        except OSError:
            return None  # ended already

    def limit_reason(
        self,
        code: int,
        oom_before: int | None,
        container: dict[str, Any],
        own_oom: cgroups.OomEvents | None,
    ) -> str | None:
        """Why a container ended, when a limit ended it: evicted, or killed by the kernel (with
        SIGKILL) while out of memory at the group's limit or its own."""
        if self.evicted:
            return self.evicted
        if code not in (-signal.SIGKILL, 128 + signal.SIGKILL):
            return None
        after = self.oom_kills()
        if oom_before is not None and after is not None and after > oom_before:
            limit = f"the group's limit of {self.plan['memory_gib']:g} GiB"
        elif own_oom is not None and own_oom.count():
            limit = f"its limit of {container['memory_gib']:g} GiB"
        else:
            return None
        return f"OOMKilled: killed by signal 9 at {limit}"

    def watch_memory(self) -> None:
        if self.plan.get("cgroup") and self.plan.get("memory_gib"):
            try:
                self.oom_events = cgroups.OomEvents(self.plan["cgroup"])
            except OSError as err:
                print(f"shim: out-of-memory kills will not be told apart: {err}", file=sys.stderr)

    def watch_storage(self) -> None:
        """Measure the writable layers in the background when the group has a storage limit."""
        limit = self.plan.get("ephemeral_storage_bytes")
        if limit:
            uppers = [Path(c["bundle"]) / "upper" for c in self.plan["containers"]]
            threading.Thread(target=self._measure, args=(uppers, limit), daemon=True).start()

    def _measure(self, uppers: list[Path], limit: int) -> None:
        interval = STORAGE_INTERVAL
        while not self.stopping.wait(interval):
            began = time.monotonic()
            used = writable_bytes(uppers)
            # Layers of many files take longer to walk: measured less often then, so that
            # measuring takes at most ~5% of a core.
            interval = max(STORAGE_INTERVAL, 20 * (time.monotonic() - began))
            if used > limit:
                self.evict(
                    f"Evicted: ephemeral storage usage {_size(used)} exceeds the group's "
                    f"limit of {_size(limit)}"
                )
                return

    def evict(self, reason: str) -> None:
        """Fail the group with ``reason`` and stop its containers (the supervising loop does)."""
        self.evicted = reason
        self.state.set_group(self.group_id, status=FAILED, reason=reason)
        self.stopping.set()
        self.notify()

    def release(self) -> None:
        """After the containers: an evicted group's writable layers go (they outgrew their
        room), and the group's cgroup."""
        if self.evicted:
            for container in self.plan["containers"]:
                shutil.rmtree(Path(container["bundle"]) / "upper", ignore_errors=True)
        if self.oom_events is not None:
            self.oom_events.close()
        if self.plan.get("cgroup"):
            try:
                cgroups.remove_group(self.plan["cgroup"], timeout=2.0)
            except OSError as err:  # the stop or the next reconcile removes it
                print(f"shim: the group's cgroup is left: {err}", file=sys.stderr)


def writable_bytes(directories: list[Path]) -> int:
    """What the files under ``directories`` take on disk (allocated blocks, as ``du``; a file
    with several links counted once)."""
    total = 0
    seen: set[tuple[int, int]] = set()
    pending = [str(d) for d in directories]
    while pending:
        try:
            with os.scandir(pending.pop()) as entries:
                for entry in entries:
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue  # removed meanwhile
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                    elif info.st_nlink > 1:
                        if (info.st_dev, info.st_ino) in seen:
                            continue
                        seen.add((info.st_dev, info.st_ino))
                    total += info.st_blocks * 512
        except OSError:
            continue
    return total


def _size(n: int) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{n / MIB:.1f} MiB"


def _started(proc: subprocess.Popen, pid_file: Path, watch: host.DirectoryWatch) -> float | None:
    """When crun wrote the container's pid file (its process is running), or None when crun
    ended first. Woken by the file's writing (``watch``) or by crun's end (a pidfd), not by
    polling."""
    ended = os.pidfd_open(proc.pid)
    try:
        while True:
            if _written(pid_file):
                return now()
            if select.select([watch.fd, ended], [], [])[0] == [ended]:
                return now() if _written(pid_file) else None
            watch.drain()
    finally:
        os.close(ended)


def _written(pid_file: Path) -> bool:
    try:
        return pid_file.stat().st_size > 0
    except FileNotFoundError:
        return False


def _pump(stream: IO[bytes], log: BoundedLog) -> None:
    while chunk := stream.read1(65536):  # type: ignore[attr-defined]
        log.write(chunk)


def main(argv: list[str]) -> int:
    """``<groups dir> <state db> <notify fd> <group fd> [<crun>]``: see :func:`serve`."""
    groups_dir, db, notify, group_fd = Path(argv[0]), Path(argv[1]), int(argv[2]), int(argv[3])
    return serve(groups_dir, db, notify, group_fd, argv[4] if len(argv) > 4 else None)


def serve(
    groups_dir: Path,
    db: Path,
    notify: int,
    group_fd: int,
    crun: str | None,
    idle: Callable[[], None] | None = None,
) -> int:
    """A shim's life, in a process of its own that has a single thread (started ahead of need,
    by ``python -m`` or forked by ``forkserver``): it gets ready, then reads messages from
    ``group_fd`` (a socket): an empty line announces a group (the shim warms cgroup moves
    meanwhile), a directory is the group to run, with its published listeners passed along
    (SCM_RIGHTS). ``idle``: work for the wait, done unless a message comes within
    ``IDLE_AFTER`` seconds (a group on its way: the shim waits for it, not for the work)."""
    host.name_process(PROCESS_NAME)
    host.private_mount_namespace()  # first, while this process has a single thread
    try:
        network.private_network()  # as early: every thread started later is in it too
        unnetworked = None
    except OSError as err:
        unnetworked = err  # the group fails: it never runs on the host's network
    ready = Ready(crun)
    ready.error = unnetworked or ready.error
    try:
        state = RuntimeState(db, create=False)  # opened now, not on the start's path
    except sqlite3.OperationalError:
        return 0  # its starter's store is gone (removed meanwhile): nothing to run, or make
    with socket.socket(fileno=group_fd) as channel:
        if idle is not None and not select.select([channel], [], [], IDLE_AFTER)[0]:
            idle()
        while True:
            try:
                line, fds, _, _ = socket.recv_fds(channel, 4096, network.MAX_PORTS)
            except OSError:
                return 0  # its starter ended without a group for it
            if line != b"\n":
                break
            ready.warm()
    listeners = [socket.socket(fileno=fd) for fd in fds]
    if not line.endswith(b"\n"):
        return 0  # its starter ended without a group for it
    group_dir = Path(line[:-1].decode())
    if group_dir.parent != groups_dir:
        print(f"shim: refusing {group_dir}: not a group of {groups_dir}", file=sys.stderr)
        return 2
    log = os.open(group_dir / "shim.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    return Shim(group_dir, state, notify, ready, listeners).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
