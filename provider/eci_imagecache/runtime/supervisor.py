"""Starting, watching and stopping container groups: the runtime's interface to the backend.

``Runtime.start`` writes one OCI bundle per container (rootfs = an overlay of the image's layer
directories and a writable upper directory), records the group in SQLite, and hands the group
to its shim (``runtime.shim``: forked by the fork server, ``runtime.forkserver``, ahead of need),
which runs in its own session, mount and network namespaces, so the group outlives the process
that started it (Pulumi's provider processes end with each command). It gives the
group an address of its own and binds the declared ports there, on the host's loopback, for the
shim to relay into the group (``network``). It returns once every container has started (or
ended, or failed to start).

State says which groups run; ``group`` and ``reconcile`` check it against reality: a group whose
shim has died is Failed with the reason, and a group no backend record claims (its creator was
killed mid-start, or its deletion was interrupted) is stopped and removed.

Each group has a cgroup of its own (``cgroups``) with its CPU, memory and process limits, made
before its containers start and removed when it stops; its shim evicts it when its containers'
writable layers outgrow its ephemeral storage.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from . import cgroups, forkserver, host, network, seccomp
from .bundle import ContainerSettings, Limits, runtime_config, write_bundle
from .cgroups import GroupLimits
from .layers import LayerStore, layer_hex
from .shim import BoundedLog
from .state import (
    CONTAINER_RUNNING,
    FAILED,
    PENDING,
    RUNNING,
    TERMINATED,
    ContainerState,
    GroupState,
    RuntimeState,
    now,
)

WARM_WAIT_SECONDS = 15.0  # a start waits at most this for the shim asked for at opening
_SAFE_ID = re.compile(r"[a-z0-9][a-z0-9-]{2,62}")
_SAFE_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")


class RuntimeUnavailable(RuntimeError):
    """No container can start here (the reason says why)."""


class StartError(RuntimeError):
    """The group could not be set up (missing layer, nothing to run, ...)."""


@dataclass(frozen=True)
class ContainerRun:
    """One container to run: its settings, its image config and layers (base first)."""

    settings: ContainerSettings
    image_config: dict[str, Any]
    layers: list[str]
    init: bool = False


class ReadyShim:
    """A group's shim, started before it has a group: its imports are done, its mount and
    network namespaces are made and its state is open (~70 ms of a start from a cache when
    started as a program) when ``run`` hands it the group's directory. ``announce`` tells it a
    group is on its way (it gets the kernel ready for crun's cgroup moves meanwhile). Until
    then it waits on a socket; when the process that started it ends without handing it a
    group (the socket closes), it ends too.

    It is forked by the fork server (``forkserver``: a fork instead of an interpreter's start)
    and, where none answers, started as a program (``python -m ...shim``). Either way its
    parent is not the process that asked for it, or not for long: it outlives that process."""

    def __init__(self, groups_dir: Path, state_path: Path, crun: str | None = None) -> None:
        crun = os.path.realpath(crun) if crun else None
        self.process: subprocess.Popen | None = None  # when started as a program
        for _ in range(2):  # again, once: a server may end (idle) as it is asked
            try:
                self._start(
                    lambda tell, go: forkserver.spawn(groups_dir, state_path, crun, tell, go)
                )
                return
            except forkserver.ForkServerUnavailable as err:
                reason = err
                if not forkserver.usable():
                    break
        _tell_once(f"eci-imagecache: shims start as programs (slower): {reason}")
        self._start(lambda tell, go: self._program(groups_dir, state_path, crun, tell, go))

    def _start(self, launch: Callable[[int, int], int]) -> None:
        """Start the shim with ``launch(tell, go)`` (its two descriptors, which it gets copies
        of; returns its pid)."""
        listen, tell = os.pipe()  # the shim writes a byte at each start or end
        # Announcements, then the group's directory with its published listeners (a message
        # each, the listeners passed as descriptors), or the end.
        go, go_shim = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.pid = launch(tell, go_shim.fileno())
        except BaseException:
            os.close(listen)
            go.close()
            raise
        finally:
            os.close(tell)
            go_shim.close()
        # File objects: a shim never used is let go when this object is (its pipe closes).
        self.listen = open(listen, "rb", buffering=0)  # noqa: SIM115
        self.go = go
        # Who it is: a group's record names its shim by pid and start time before handing over.
        self.start_time = host.process_start(self.pid)

    def _program(
        self, groups_dir: Path, state_path: Path, crun: str | None, tell: int, go: int
    ) -> int:
        self.process = subprocess.Popen(
            [
                # -S: the shim needs only the standard library and this package (on
                # PYTHONPATH), and starts faster without the site packages.
                *(sys.executable, "-S", "-m", "eci_imagecache.runtime.shim"),
                *(str(groups_dir), str(state_path), str(tell), str(go)),
                *([crun] if crun else []),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # the shim writes to its group's shim.log
            stderr=subprocess.DEVNULL,
            cwd="/",
            start_new_session=True,
            pass_fds=(tell, go),
            env={**os.environ, "PYTHONPATH": _package_root()},
        )
        # Reap it if it ends while this process lives; it outlives this process otherwise.
        threading.Thread(target=self.process.wait, daemon=True).start()
        return self.process.pid

    def announce(self) -> None:
        """A group is on its way. BrokenPipeError: the shim has ended (it was killed)."""
        self.go.send(b"\n", socket.MSG_NOSIGNAL)

    def run(self, directory: Path, listeners: Sequence[socket.socket] = ()) -> IO[bytes]:
        """Hand the shim its group and the group's published listeners (it gets copies: the
        caller closes its own); returns the pipe it tells progress on.
        BrokenPipeError: the shim has ended (it was killed) and takes no group."""
        try:
            message = f"{directory}\n".encode()
            fds = [listener.fileno() for listener in listeners]
            socket.send_fds(self.go, [message], fds, socket.MSG_NOSIGNAL)
        finally:
            self.go.close()
        return self.listen

    def close(self) -> None:
        """Let it go unused (it ends)."""
        self.go.close()
        self.listen.close()


class Runtime:
    def __init__(
        self,
        groups_dir: Path,
        db_path: Path,
        layers: LayerStore,
        grace_seconds: float = 10.0,
        log_limit: int = 1 << 20,
        start_timeout: float = 60.0,
    ) -> None:
        self.groups_dir = groups_dir
        self.layers = layers
        self.state = RuntimeState(db_path)
        self.grace_seconds = grace_seconds
        self.log_limit = log_limit
        self.start_timeout = start_timeout
        groups_dir.mkdir(parents=True, exist_ok=True)
        self._ready: ReadyShim | None = None
        self._ready_lock = threading.Lock()
        self._expected = threading.local()  # the shim announced by this thread's ``expect``
        self._limits: Limits | None = None
        self.cgroup_key = cgroups.runtime_key(groups_dir)
        self._host_seen: tuple[tuple[str | None, str | None], float, str | None] | None = None
        # A shim kept ready (and the fork server listening: started if none is) before this
        # process's first start, off its path: that start then costs what the next ones do.
        self._warmed = threading.Event()
        threading.Thread(target=self._warm, name="shim-warm", daemon=True).start()

    @classmethod
    def reader(cls, groups_dir: Path, db_path: Path) -> RuntimeReader:
        """A view of the groups that starts, stops and writes nothing."""
        return RuntimeReader(groups_dir, RuntimeState(db_path, read_only=True))

    def _warm(self) -> None:
        try:
            if self._host()[1] is None:
                with contextlib.suppress(OSError):  # the first start says why, if it fails too
                    self.ready()  # the fork server is started if none listens
        finally:
            self._warmed.set()

    def unavailable(self) -> str | None:
        return self._host()[1]

    def _host(self) -> tuple[str | None, str | None]:
        """crun's path and why containers cannot run here (None when they can). A positive
        answer is kept a minute for the same crun setting and PATH: each create asks twice,
        and the answer costs a scan of the PATH and /proc."""
        key = (os.environ.get("ECI_IMAGECACHE_CRUN"), os.environ.get("PATH"))
        kept = self._host_seen
        if kept is not None and kept[0] == key and time.monotonic() - kept[1] < 60:
            return kept[2], None
        reason = host.unavailable()
        crun = host.crun_binary()
        self._host_seen = (key, time.monotonic(), crun) if reason is None else None
        return crun, reason

    def _dir(self, group_id: str) -> Path:
        if not _SAFE_ID.fullmatch(group_id):
            raise StartError(f"refusing group id {group_id[:80]!r}")
        return self.groups_dir / group_id

    # starting -----------------------------------------------------------------------------

    def start(
        self,
        group_id: str,
        name: str,
        containers: list[ContainerRun],
        restart_policy: str = "Always",
        wait: bool = True,
        limits: GroupLimits | None = None,
    ) -> GroupState:
        """Start the group's containers; ``limits`` hold for the group as a whole (default:
        podman's process limit, nothing else)."""
        crun, reason = self._host()
        if reason:
            raise RuntimeUnavailable(reason)
        assert crun is not None
        directory = self._dir(group_id)
        requested = now()
        for run in containers:
            if not _SAFE_NAME.fullmatch(run.settings.name):
                raise StartError(f"refusing container name {run.settings.name[:80]!r}")
            for digest in run.layers:
                if not self.layers.has(digest):
                    raise StartError(
                        f"container {run.settings.name}: layer {digest[:19]} is not unpacked"
                    )
        ports = published_ports(containers)
        listeners: list[socket.socket] = []

        def claim_address(used: set[str]) -> str:
            address, bound = network.publish(ports, used)
            listeners.extend(bound)
            return address

        shim = self._expected.__dict__.pop("shim", None) or self._take_ready(crun)
        try:
            # The record names its shim from the start (one write before the hand-over).
            self.state.add_group(
                group_id,
                name,
                directory,
                restart_policy,
                [
                    ContainerState(name=r.settings.name, init=r.init, ports=list(r.settings.ports))
                    for r in containers
                ],
                owner_pid=os.getpid(),
                requested_at=requested,
                shim_pid=shim.pid,
                shim_start=shim.start_time,
                claim_address=claim_address,
            )
        except BaseException as err:
            _close_all(listeners)
            self._give_back(shim)
            if isinstance(err, network.PublishError):
                raise StartError(str(err)) from err
            raise
        try:
            self._write(directory, group_id, containers, restart_policy, crun, limits)
        except Exception as err:
            self._remove_cgroup(group_id)
            _close_all(listeners)
            # The shim never had this group: it stays ready for the next one.
            self.state.set_group(
                group_id,
                status=FAILED,
                reason=f"not started: {err}",
                shim_pid=None,
                shim_start=None,
            )
            self._give_back(shim)
            raise StartError(str(err)) from err
        try:
            try:
                listen = shim.run(directory, listeners)
            except BrokenPipeError:  # the one ready has gone since it was announced: start one
                shim.listen.close()
                shim = ReadyShim(self.groups_dir, self.state.path, crun)
                self.state.set_group(group_id, shim_pid=shim.pid, shim_start=shim.start_time)
                shim.announce()
                listen = shim.run(directory, listeners)
        finally:
            _close_all(listeners)  # the shim holds them now (or the group has failed)
        try:
            if not wait:
                return self.group(group_id) or _missing(group_id)
            return self.wait_started(group_id, listen=listen.fileno())
        finally:
            listen.close()
            # Started once this group has, so that the two do not compete for a core.
            self.ready()

    def ready(self) -> None:
        """Start a shim ahead of the next group's start, unless one is ready: one is kept per
        process (a burst of starts finds one ready, the others each ask the fork server for
        theirs: a fork each)."""
        with self._ready_lock:
            if self._ready is None:
                self._ready = ReadyShim(self.groups_dir, self.state.path, host.crun_binary())

    @contextlib.contextmanager
    def expecting(self) -> Iterator[None]:
        """Within: this thread is about to start a group (its images are being prepared). The
        shim kept ready is announced at once, so that what it readies for crun overlaps that
        preparation, and this thread's ``start`` hands the group to it; one no start took is
        kept ready again at the end."""
        crun, reason = self._host()
        if crun is not None and reason is None:
            self._expected.shim = self._take_ready(crun)
        try:
            yield
        finally:
            shim = self._expected.__dict__.pop("shim", None)
            if shim is not None:
                self._give_back(shim)

    def _take_ready(self, crun: str) -> ReadyShim:
        """The shim kept ready (or a new one), told a group is on its way."""
        # The one asked for as the runtime opened, if that is under way: sooner than another.
        self._warmed.wait(WARM_WAIT_SECONDS)
        with self._ready_lock:
            shim, self._ready = self._ready, None
        if shim is not None:
            try:
                shim.announce()
                return shim
            except BrokenPipeError:  # it has gone (killed)
                shim.close()
        shim = ReadyShim(self.groups_dir, self.state.path, crun)
        shim.announce()
        return shim

    def _give_back(self, shim: ReadyShim) -> None:
        """A shim announced a group that did not come: ready for the next one, unless another
        is kept already."""
        with self._ready_lock:
            if self._ready is None:
                self._ready, shim = shim, None
        if shim is not None:
            shim.close()

    def _write(
        self,
        directory: Path,
        group_id: str,
        containers: list[ContainerRun],
        restart_policy: str,
        crun: str,
        limits: GroupLimits | None = None,
    ) -> None:
        limits = limits or GroupLimits()
        directory.mkdir(parents=True, exist_ok=True)
        # Directories the shim writes or mounts on: made here, off its path to crun.
        (directory / "logs").mkdir(exist_ok=True)
        if any(not run.layers for run in containers):
            (directory / "empty").mkdir(exist_ok=True)  # the lower layer of an image of none
        controllers = self._cgroup_limits()
        cgroup = self._make_cgroup(group_id, limits)
        planned = []
        for run in containers:
            bundle = directory / "containers" / run.settings.name
            top_first = [self.layers.path(d) for d in reversed(run.layers)]
            spec = runtime_config(
                run.image_config,
                run.settings,
                "rootfs",
                top_first,
                controllers,
                limits,
                f"{cgroup}/{run.settings.name}" if cgroup else None,
            )
            _with_compiled_filter(spec, crun)
            write_bundle(bundle, spec)
            for sub in ("upper", "work", "rootfs"):
                (bundle / sub).mkdir(exist_ok=True)
            planned.append(
                {
                    "name": run.settings.name,
                    "crun_id": f"{group_id}-{run.settings.name}",
                    "bundle": str(bundle),
                    "lower": [layer_hex(d) for d in reversed(run.layers)],
                    "init": run.init,
                    "memory_gib": run.settings.memory_gib,
                }
            )
        plan = {
            "group_id": group_id,
            # Until it records the group, its starter owns it: the shim stops the group if the
            # starter dies first (nothing will ever record, show or delete it).
            "owner_pid": os.getpid(),
            "restart_policy": restart_policy,
            "grace_seconds": self.grace_seconds,
            "log_limit": self.log_limit,
            "layers_dir": str(self.layers.layers),
            "crun": crun,
            "containers": planned,
            "cgroup": cgroup,
            "memory_gib": limits.memory_gib,
            "ephemeral_storage_bytes": int(limits.ephemeral_storage_gib * (1 << 30))
            if limits.ephemeral_storage_gib
            else None,
        }
        (directory / "plan.json").write_text(json.dumps(plan))

    def _make_cgroup(self, group_id: str, limits: GroupLimits) -> str | None:
        """The group's cgroup, made with its limits (None on a machine without cgroups)."""
        if not cgroups.hierarchies():
            return None
        path = cgroups.group_path(self.cgroup_key, group_id)
        try:
            cgroups.make_group(path, limits)
        except OSError as err:
            raise StartError(f"the group's cgroup {path}: {err}") from err
        return path

    def _remove_cgroup(self, group_id: str) -> None:
        """Remove the group's cgroup; one still busy is left for the next reconcile."""
        try:
            cgroups.remove_group(cgroups.group_path(self.cgroup_key, group_id))
        except OSError as err:
            print(f"eci-imagecache: the cgroup of {group_id} is left: {err}", file=sys.stderr)

    def _cgroup_limits(self) -> Limits:
        """Which limits containers can have here (read once: the kernel's controllers)."""
        if self._limits is None:
            controllers = host.cgroup_controllers()
            self._limits = Limits(cpu="cpu" in controllers, memory="memory" in controllers)
        return self._limits

    def wait_started(
        self, group_id: str, timeout: float | None = None, listen: int | None = None
    ) -> GroupState:
        """Until every container has started (or ended), the group failed, or its shim died.
        With ``listen`` (the shim's notification pipe) it wakes when the shim says something
        changed instead of polling."""
        deadline = time.monotonic() + (timeout or self.start_timeout)
        while True:
            group = self.group(group_id) or _missing(group_id)
            mains = [c for c in group.containers if not c.init]
            if group.status == FAILED or all(
                c.started_at is not None or c.state == TERMINATED for c in mains
            ):
                return group
            left = deadline - time.monotonic()
            if left <= 0:
                return group
            if listen is None:
                time.sleep(0.01)
                continue
            ready, _, _ = select.select([listen], [], [], min(left, 0.5))
            if ready and not os.read(listen, 4096):
                listen = None  # the shim has ended: what it wrote is final

    def adopt(self, group_id: str, db: sqlite3.Connection | None = None) -> None:
        """The backend has recorded the group: recovery no longer treats it as an orphan.
        With ``db`` (a write transaction on the same database), in that transaction, so that
        the record and the adoption commit together."""
        if db is None:
            self.state.set_group(group_id, owner_pid=None)
        else:
            RuntimeState.adopted(db, group_id)

    # reading ------------------------------------------------------------------------------

    def observe(self, group_id: str) -> GroupState | None:
        """The group as recorded and as the process table shows it; writes nothing."""
        return self._reader().observe(group_id)

    def group(self, group_id: str) -> GroupState | None:
        """The group's state, checked against reality; what the check finds is recorded (a
        dead shim fails a live group, a container that ended unsupervised is Terminated)."""
        recorded, seen = self._reader().recorded_and_seen(group_id)
        if recorded is None or seen is None or seen == recorded:
            return seen
        if (seen.status, seen.reason) != (recorded.status, recorded.reason):
            self.state.set_group(group_id, status=seen.status, reason=seen.reason)
        for before, after in zip(recorded.containers, seen.containers, strict=True):
            if after != before:
                self.state.set_container(
                    group_id,
                    after.name,
                    state=after.state,
                    # When it was found ended, if nobody saw it end.
                    finished_at=after.finished_at
                    if after.finished_at is not None or after.state != TERMINATED
                    else now(),
                    reason=after.reason,
                )
        return self.state.group(group_id)

    def _reader(self) -> RuntimeReader:
        return RuntimeReader(self.groups_dir, self.state)

    def logs(self, group_id: str, container: str, tail: int | None = None) -> bytes:
        return self._reader().logs(group_id, container, tail)

    def group_ids(self) -> list[str]:
        return self.state.group_ids()

    def layers_in_use(self) -> set[str]:
        """Digests of the layers some group's containers are mounted on (or will be)."""
        return self._reader().layers_in_use()

    def group_layers(self, group_id: str) -> set[str]:
        """Digests of the layers this group's containers are mounted on (or will be); none
        once it has been stopped (its plan goes with its directory)."""
        return planned_layers(self._dir(group_id) / "plan.json")

    # stopping -----------------------------------------------------------------------------

    def stop(self, group_id: str, grace: float | None = None) -> None:
        """Stop the containers (SIGTERM, SIGKILL after the grace period), unmount, remove."""
        directory = self._dir(group_id)
        group = self.state.group(group_id)
        if group is not None and host.alive(group.shim_pid, group.shim_start):
            assert group.shim_pid is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(group.shim_pid, signal.SIGTERM)
            limit = (self.grace_seconds if grace is None else grace) + 10
            deadline = time.monotonic() + limit
            while host.alive(group.shim_pid, group.shim_start) and time.monotonic() < deadline:
                time.sleep(0.01)
            if host.alive(group.shim_pid, group.shim_start):
                # The shim and what it started (its session's process group: crun run).
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group.shim_pid, signal.SIGKILL)
        names = [c.name for c in group.containers] if group else []
        if not names and (directory / "containers").is_dir():
            names = [p.name for p in (directory / "containers").iterdir()]
        for name in names:
            self._force_delete(f"{group_id}-{name}")
        if group is not None and group.shim_pid:
            # Nothing of the group's session outlives the stop (a crun run reaping its child).
            deadline = time.monotonic() + 10
            while host.session_processes(group.shim_pid) and time.monotonic() < deadline:
                time.sleep(0.01)
        self._remove_cgroup(group_id)
        shutil.rmtree(directory, ignore_errors=True)
        self.state.remove_group(group_id)

    @staticmethod
    def _force_delete(crun_id: str) -> None:
        """Kill and delete a container the shim left behind (the shim was killed)."""
        if not Path("/run/crun", crun_id).exists():
            return
        crun = host.crun_binary() or "crun"
        argv = [crun, "delete", "--force", crun_id]
        if host.cgroup_hybrid():
            argv = [
                *("unshare", "--mount", "--propagation", "private", "--", "sh", "-c"),
                f'umount -l {host.UNIFIED} && exec "$@"',
                "sh",
                *argv,
            ]
        subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
            timeout=30,
        )

    def reconcile(self, known: Callable[[str], bool]) -> list[str]:
        """Stop and remove groups no record claims; fail those whose shim died. Returns the
        ids removed."""
        removed = []
        for group_id in self.state.group_ids():
            group = self.state.group(group_id)
            if group is None or _being_created(group):
                continue
            if not known(group_id):
                self.stop(group_id)
                removed.append(group_id)
                continue
            if group.owner_pid is not None:
                self.adopt(group_id)  # recorded, then its creator died before saying so
            self.group(group_id)
        for group_id in self._reader().leftover_directories():
            self.stop(group_id)
            removed.append(group_id)
        self._remove_leftover_cgroups()
        return removed

    def _remove_leftover_cgroups(self) -> None:
        """Remove the cgroups of this runtime's groups that have no state (a stop that could
        not remove one). Listed before the rows are read: a start adds its row first."""
        found = cgroups.group_ids(self.cgroup_key)
        for group_id in found - set(self.state.group_ids()):
            if _SAFE_ID.fullmatch(group_id):
                self._remove_cgroup(group_id)


def planned_layers(plan: Path) -> set[str]:
    """Digests of the layers a group's plan mounts its containers on (none when the plan
    cannot be read: a group being removed)."""
    try:
        containers = json.loads(plan.read_text())["containers"]
    except (OSError, ValueError, KeyError):
        return set()
    return {f"sha256:{h}" for c in containers for h in c.get("lower", [])}


class RuntimeReader:
    """Groups as recorded, checked against the process table: starts, stops and writes
    nothing (``eci-imagecache groups`` reads through it; recovery is for writers)."""

    def __init__(self, groups_dir: Path, state: RuntimeState) -> None:
        self.groups_dir = groups_dir
        self.state = state

    def group_ids(self) -> list[str]:
        return self.state.group_ids()

    def unclaimed(self, known: Callable[[str], bool]) -> list[str]:
        """The groups :meth:`Runtime.reconcile` stops and removes: those no record claims
        (``known``) that no live process is creating, and the directories it removes."""
        found = []
        for group_id in self.state.group_ids():
            group = self.state.group(group_id)
            if group is not None and not _being_created(group) and not known(group_id):
                found.append(group_id)
        return found + self.leftover_directories()

    def leftover_directories(self) -> list[str]:
        """Group directories with a plan and no state row: left by a removal that was
        interrupted. The directories are listed before the rows are read: a start adds its
        row before it makes its directory, so a group being started now is never taken for
        a leftover."""
        if not self.groups_dir.is_dir():
            return []
        planned = [
            directory.name
            for directory in sorted(self.groups_dir.iterdir())
            if directory.is_dir()
            and _SAFE_ID.fullmatch(directory.name)
            and (directory / "plan.json").exists()
        ]
        ids = set(self.state.group_ids())
        return [name for name in planned if name not in ids]

    def layers_in_use(self, excluding: Iterable[str] = ()) -> set[str]:
        """Digests of the layers some group's containers are mounted on (or will be), but
        the groups ``excluding`` names."""
        skipped = set(excluding)
        used = set()
        for plan in self.groups_dir.glob("*/plan.json"):
            if plan.parent.name not in skipped:
                used |= planned_layers(plan)
        return used

    def observe(self, group_id: str) -> GroupState | None:
        return self.recorded_and_seen(group_id)[1]

    def recorded_and_seen(self, group_id: str) -> tuple[GroupState | None, GroupState | None]:
        """The group as recorded and as it is. They differ only once its shim has died (a
        live shim is the one that records its group's changes)."""
        group = self.state.group(group_id)
        if group is None or group.shim_pid is None:
            return group, group
        if host.alive(group.shim_pid, group.shim_start):
            return group, group
        # The shim writes its final state before it exits: read again before judging.
        group = self.state.group(group_id)
        if group is None or group.shim_pid is None:
            return group, group
        gone = f"supervisor process {group.shim_pid} ended unexpectedly"
        seen = replace(
            group, containers=[self._unsupervised(group, c, gone) for c in group.containers]
        )
        if group.status in (PENDING, RUNNING):
            seen = replace(seen, status=FAILED, reason=gone)
        return group, seen

    def _unsupervised(self, group: GroupState, c: ContainerState, gone: str) -> ContainerState:
        """A container of a group whose shim has died: still running (nothing restarts it or
        keeps its output), or ended at a time and with a code nobody saw."""
        if c.state == TERMINATED:
            return c
        if self.container_running(group.id, c.name):
            if c.state == CONTAINER_RUNNING and c.reason.startswith("running unsupervised"):
                return c
            return replace(
                c,
                state=CONTAINER_RUNNING,
                reason=f"running unsupervised: {gone} (not restarted; output not kept)",
            )
        if c.state == CONTAINER_RUNNING and c.reason.startswith("running unsupervised"):
            return replace(c, state=TERMINATED, reason="ended unsupervised (exit code unknown)")
        return replace(c, state=TERMINATED, reason=gone)

    def container_running(self, group_id: str, name: str) -> bool:
        """Whether crun still holds the container and its process lives."""
        if not (_SAFE_ID.fullmatch(group_id) and _SAFE_NAME.fullmatch(name)):
            return False
        if not Path("/run/crun", f"{group_id}-{name}").exists():
            return False
        try:
            pid = int((self.groups_dir / group_id / "containers" / name / "pid").read_text())
        except (OSError, ValueError):
            return False
        return host.alive(pid)

    def logs(self, group_id: str, container: str, tail: int | None = None) -> bytes:
        if not _SAFE_ID.fullmatch(group_id):
            raise StartError(f"refusing group id {group_id[:80]!r}")
        if not _SAFE_NAME.fullmatch(container):
            raise StartError(f"refusing container name {container[:80]!r}")
        return BoundedLog.read(self.groups_dir / group_id / "logs" / f"{container}.log", tail)


def _with_compiled_filter(spec: dict[str, Any], crun: str) -> None:
    """crun loads the container's seccomp filter compiled ahead instead of compiling it at each
    start; the filter stays in ``linux.seccomp`` (what it is, and what crun compiles without)."""
    bpf = seccomp.compiled_filter(crun, spec["linux"]["seccomp"])
    if bpf is not None:
        spec.setdefault("annotations", {})[seccomp.BPF_ANNOTATION] = bpf


def published_ports(containers: list[ContainerRun]) -> list[int]:
    """The ports the group's containers declare, each once, in order."""
    ports = sorted({port for run in containers for port in run.settings.ports})
    for port in ports:
        if not 0 < port < 65536:
            raise StartError(f"refusing port {port}: not between 1 and 65535")
    if len(ports) > network.MAX_PORTS:
        raise StartError(f"{len(ports)} ports declared: at most {network.MAX_PORTS} are published")
    return ports


def _close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def _being_created(group: GroupState) -> bool:
    """Started by a process that lives and has not recorded it yet: no reconcile touches it."""
    return group.owner_pid is not None and host.alive(group.owner_pid)


def _missing(group_id: str) -> GroupState:
    raise StartError(f"group {group_id} has no runtime state")


_told: set[str] = set()


def _tell_once(message: str) -> None:
    """Say it on stderr, once per process."""
    if message not in _told:
        _told.add(message)
        print(message, file=sys.stderr)


def _package_root() -> str:
    """The directory holding the ``eci_imagecache`` package, for the shim's interpreter."""
    return str(Path(__file__).resolve().parents[2])


__all__ = [
    "CONTAINER_RUNNING",
    "ContainerRun",
    "Runtime",
    "RuntimeReader",
    "RuntimeUnavailable",
    "StartError",
]
