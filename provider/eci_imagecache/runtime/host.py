"""What this machine offers containers, and the few system calls the runtime makes itself."""

from __future__ import annotations

import ctypes
import os
import shutil
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
