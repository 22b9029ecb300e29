"""What this machine offers containers, and the few system calls the runtime makes itself."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import threading
import time
from pathlib import Path

MNT_DETACH = 2
UNIFIED = "/sys/fs/cgroup/unified"

_libc = ctypes.CDLL(None, use_errno=True)


def mount_overlay(target: Path, lower: list[str], upper: Path, work: Path, cwd: Path) -> None:
    """Mount an overlay at ``target``; ``lower`` (top first) is relative to ``cwd``, which keeps
    the option string short enough for images with many layers."""
    options = f"lowerdir={':'.join(lower)},upperdir={upper},workdir={work}"
    if len(options) >= 4096:
        raise OSError(f"too many layers for one overlay mount ({len(lower)})")
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        if _libc.mount(b"overlay", str(target).encode(), b"overlay", 0, options.encode()) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"overlay mount at {target}: {os.strerror(errno)}")
    finally:
        os.chdir(previous)


CLONE_NEWNS = 0x00020000
MS_REC, MS_PRIVATE = 0x4000, 0x40000


def private_mount_namespace() -> None:
    """Move this (single-threaded) process into a mount namespace of its own, with nothing
    propagating back: mounts made here are never seen on the host."""
    if _libc.unshare(CLONE_NEWNS) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"unshare(CLONE_NEWNS): {os.strerror(errno)}")
    if _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"making / private: {os.strerror(errno)}")


PR_SET_NAME = 15


def name_process(name: str) -> None:
    """Name this process (``/proc/<pid>/comm``, what ``ps`` and ``top`` show; at most 15
    bytes are kept)."""
    _libc.prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


MS_BIND, MS_REMOUNT, MS_RDONLY = 0x1000, 0x20, 0x1


def read_only_bind(path: str) -> None:
    """Mount ``path`` (a file) over itself read-only, in this process's mount namespace."""
    target = path.encode()
    if _libc.mount(target, target, None, MS_BIND, None) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"bind mount of {path}: {os.strerror(errno)}")
    if _libc.mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY, None) != 0:
        errno = ctypes.get_errno()
        _libc.umount2(target, MNT_DETACH)
        raise OSError(errno, f"read-only remount of {path}: {os.strerror(errno)}")


def unmount(target: Path) -> None:
    if _libc.umount2(str(target).encode(), MNT_DETACH) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"unmount {target}: {os.strerror(errno)}")


def mounts() -> list[tuple[str, str]]:
    """(mount point, type) of this process's mount namespace."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        out.append((fields[4].replace("\\040", " "), right.split()[0]))
    return out


def cgroup_hybrid() -> bool:
    """cgroup v1 with a v2 hierarchy that holds controllers: crun refuses this layout, so the
    runtime's own mount namespace drops the v2 mount and crun sees plain v1."""
    table = dict(mounts())
    if table.get("/sys/fs/cgroup") != "tmpfs" or table.get(UNIFIED) != "cgroup2":
        return False
    try:
        return bool(Path(UNIFIED, "cgroup.controllers").read_text().split())
    except OSError:
        return False


def cgroup_controllers() -> set[str]:
    """Controllers containers can be limited with (v2 root controllers, or v1 hierarchies)."""
    table = dict(mounts())
    if table.get("/sys/fs/cgroup") == "cgroup2":
        try:
            return set(Path("/sys/fs/cgroup/cgroup.controllers").read_text().split())
        except OSError:
            return set()
    found = set()
    for controller, probe in (("memory", "memory.limit_in_bytes"), ("cpu", "cpu.cfs_quota_us")):
        if Path("/sys/fs/cgroup", controller, probe).exists():
            found.add(controller)
    return found


def own_cgroup_procs() -> Path | None:
    """The ``cgroup.procs`` of this process's own cgroup in a cgroup v1 hierarchy, or None
    (cgroup v2 only, or no hierarchy found)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if number == "0" or not controllers:
            continue  # the v2 hierarchy: processes start in their cgroup (no move to warm)
        for name in controllers.split(","):
            procs = Path("/sys/fs/cgroup", name.removeprefix("name="), path.lstrip("/"))
            procs /= "cgroup.procs"
            if procs.is_file():
                return procs
    return None


class CgroupMoves:
    """Keeps moving a process between cgroups cheap while containers start (cgroup v1).

    The kernel makes a move (a pid written to ``cgroup.procs``) wait for an RCU grace period
    (10-16 ms here) when no move happened in the last one; crun moves each container's process
    into its cgroups. While ``keep`` runs, this process is moved within its own cgroup (a
    change of nothing) every ``interval`` seconds, so crun's moves find that wait done: it is
    taken once, beside the start's other work, instead of on its path."""

    def __init__(self, procs: Path, interval: float = 0.002) -> None:
        self.procs = procs
        self.interval = interval
        self.stop = threading.Event()

    def keep(self, limit: float) -> None:
        """Until ``stop`` is set or ``limit`` seconds have passed (a start that takes longer
        has time for the wait)."""
        deadline = time.monotonic() + limit
        pid = str(os.getpid()).encode()
        try:
            fd = os.open(self.procs, os.O_WRONLY)
        except OSError:
            return
        try:
            while time.monotonic() < deadline:
                os.write(fd, pid)
                if self.stop.wait(self.interval):
                    return
        except OSError:
            return  # moved out of that cgroup meanwhile: nothing to warm
        finally:
            os.close(fd)


IN_CLOSE_WRITE, IN_MOVED_TO = 0x8, 0x80
IN_NONBLOCK, IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC


class DirectoryWatch:
    """Files written (closed after writing) or renamed into a directory, as a readable file
    descriptor (inotify): a wait for a file wakes when it is written, not at a polling tick."""

    def __init__(self, directory: Path) -> None:
        self.fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"inotify_init1: {os.strerror(errno)}")
        mask = IN_CLOSE_WRITE | IN_MOVED_TO
        if _libc.inotify_add_watch(self.fd, str(directory).encode(), mask) < 0:
            errno = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(errno, f"inotify_add_watch {directory}: {os.strerror(errno)}")

    def drain(self) -> None:
        """Forget the events read so far (the caller looks at the files themselves)."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self.fd, 65536):
                pass

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> DirectoryWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def crun_binary() -> str | None:
    """``$ECI_IMAGECACHE_CRUN`` if set (it must exist), else ``crun`` on the PATH."""
    configured = os.environ.get("ECI_IMAGECACHE_CRUN")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return shutil.which("crun")


def unavailable() -> str | None:
    """Why containers cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "not running as root (overlay mounts and crun need CAP_SYS_ADMIN)"
    if crun_binary() is None:
        return "crun is not installed (scripts/install-system-deps.sh installs it)"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "the kernel has no overlay file system"
    return None


def process_start(pid: int) -> str | None:
    """The start time of ``pid`` (to tell a process from a later one with the same pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def alive(pid: int | None, start: str | None = None) -> bool:
    if not pid:
        return False
    current = process_start(pid)
    if current is None:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    if state == "Z":
        return False
    return start is None or current == start


def session_processes(sid: int) -> list[int]:
    """Live processes of session ``sid`` (a shim's: it leads its own session)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:
            found.append(int(proc.name))
    return found
