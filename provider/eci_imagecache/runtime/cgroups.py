"""A cgroup per container group: the group's CPU, memory and process limits hold for all of its
containers together, as they do for an ECI instance.

The group's cgroup is ``/eci-imagecache/<runtime key>/<group id>`` in each hierarchy (the key
tells apart the runtimes of different stores on one machine, so that one never removes
another's); crun makes each container's cgroup inside it (``linux.cgroupsPath``). On cgroup v1
the group's directory is made in the memory, cpu and pids hierarchies with its limits written
there, before its containers start; crun adds the group's directory to the other hierarchies as
it places the containers. On cgroup v2 (one hierarchy) the controllers are enabled down the path.
The directories are removed when the group stops (and leftovers by reconcile).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PARENT = "eci-imagecache"
CPU_PERIOD = 100_000
# podman's default (containers.conf ``pids_limit``): processes and threads of the group.
DEFAULT_PIDS_LIMIT = 2048


@dataclass(frozen=True)
class GroupLimits:
    """What a group may use as a whole: cores, memory, processes (threads count), and bytes
    written to its containers' writable layers. None: no limit."""

    cpu: float | None = None
    memory_gib: float | None = None
    pids: int | None = DEFAULT_PIDS_LIMIT
    ephemeral_storage_gib: float | None = None


def runtime_key(groups_dir: Path) -> str:
    return hashlib.sha256(str(groups_dir.resolve()).encode()).hexdigest()[:12]


def group_path(key: str, group_id: str) -> str:
    """The group's cgroup, relative to each hierarchy's root (``linux.cgroupsPath`` form)."""
    return f"/{PARENT}/{key}/{group_id}"


@cache
def hierarchies() -> dict[str, Path]:
    """Mounted cgroup hierarchies of this mount namespace: v1 ones by controller (and ``name=``),
    and the v2 one as ``""`` when it is the only one (/sys/fs/cgroup itself)."""
    found: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype, _source, options = [*right.split(), "", "", ""][:3]
        point = Path(left.split()[4].replace("\\040", " "))
        if fstype == "cgroup":  # its options name its controllers (among mount flags)
            for option in options.split(","):
                found.setdefault(option, point)
        elif fstype == "cgroup2" and str(point) == "/sys/fs/cgroup":
            found[""] = point
    return found


def _write(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def make_group(path: str, limits: GroupLimits) -> None:
    """Make the group's cgroup with its limits (OSError when the kernel refuses)."""
    roots = hierarchies()
    relative = path.lstrip("/")
    if "" in roots:  # cgroup v2
        _make_v2(roots[""], relative, limits)
        return
    settings = {
        "memory": {"memory.limit_in_bytes": _bytes(limits.memory_gib)},
        "cpu": {
            "cpu.cfs_period_us": str(CPU_PERIOD) if limits.cpu else None,
            "cpu.cfs_quota_us": str(int(limits.cpu * CPU_PERIOD)) if limits.cpu else None,
        },
        "pids": {"pids.max": str(limits.pids) if limits.pids else None},
    }
    for controller, files in settings.items():
        if controller not in roots:
            continue
        directory = roots[controller] / relative
        _mkdirs(directory)
        for name, value in files.items():
            if value is not None:
                _write(directory / name, value)


def _make_v2(root: Path, relative: str, limits: GroupLimits) -> None:
    directory = root / relative
    _mkdirs(directory)
    wanted = {"memory", "cpu", "pids"} & set((root / "cgroup.controllers").read_text().split())
    parent = root
    enable = " ".join(f"+{c}" for c in sorted(wanted))
    for part in Path(relative).parts:  # down to the group, whose containers crun limits
        _write(parent / "cgroup.subtree_control", enable)
        parent /= part
    _write(directory / "cgroup.subtree_control", enable)
    if limits.memory_gib and "memory" in wanted:
        _write(directory / "memory.max", _bytes(limits.memory_gib) or "max")
    if limits.cpu and "cpu" in wanted:
        _write(directory / "cpu.max", f"{int(limits.cpu * CPU_PERIOD)} {CPU_PERIOD}")
    if limits.pids and "pids" in wanted:
        _write(directory / "pids.max", str(limits.pids))


def _bytes(gib: float | None) -> str | None:
    return str(int(gib * (1 << 30))) if gib else None


def _mkdirs(directory: Path) -> None:
    """``mkdir -p``, again when a parent is removed meanwhile (the last group of a runtime
    stopping removes the runtime's directory)."""
    for attempt in range(5):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            return
        except FileNotFoundError:
            if attempt == 4:
                raise


def remove_group(path: str, timeout: float = 5.0) -> None:
    """Remove the group's cgroup (its containers' ones first) from every hierarchy, and the
    runtime's directory once empty. Waits up to ``timeout`` for processes still leaving."""
    relative = path.lstrip("/")
    deadline = time.monotonic() + timeout
    for root in set(hierarchies().values()):
        top = root / relative
        if not top.is_dir():
            continue
        for directory in sorted(_subdirectories(top), key=lambda p: -len(p.parts)):
            while True:
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as err:
                    if err.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
        with contextlib.suppress(OSError):  # another group of the runtime is there
            top.parent.rmdir()


def _subdirectories(top: Path) -> list[Path]:
    found = [top]
    for here, dirs, _ in os.walk(top):
        found.extend(Path(here, d) for d in dirs)
    return found


def group_ids(key: str) -> set[str]:
    """The groups with a cgroup of the runtime ``key`` in some hierarchy."""
    found: set[str] = set()
    for root in set(hierarchies().values()):
        with contextlib.suppress(OSError):
            found |= {p.name for p in (root / PARENT / key).iterdir() if p.is_dir()}
    return found


class OomEvents:
    """How many times the group has run out of memory, counted by the kernel: cgroup v2's
    ``memory.events`` (``oom_kill``, its containers' too); on cgroup v1, whose counters stay in
    the cgroup of the process killed (a container's, gone with it), an eventfd registered on
    the group's ``memory.oom_control``, which the kernel signals at each time the group is out
    of memory."""

    def __init__(self, path: str) -> None:
        roots = hierarchies()
        relative = path.lstrip("/")
        self.events: Path | None = None
        self.fd: int | None = None
        self.seen = 0
        if "" in roots:
            self.events = roots[""] / relative / "memory.events"
        elif "memory" in roots:
            directory = roots["memory"] / relative
            self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            control = os.open(directory / "memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _write(directory / "cgroup.event_control", f"{self.fd} {control}")
            except OSError:
                self.close()
            finally:
                os.close(control)

    def count(self) -> int | None:
        """The count so far (None: the kernel does not say)."""
        if self.fd is not None:
            with contextlib.suppress(BlockingIOError):
                self.seen += os.eventfd_read(self.fd)
            return self.seen
        if self.events is None:
            return None
        try:
            text = self.events.read_text()
        except OSError:
            return None
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
