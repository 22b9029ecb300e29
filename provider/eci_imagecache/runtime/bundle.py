"""OCI runtime bundles: ``config.json`` (runtime-spec 1.0) from an image config and a container.

What runs follows ECI (and Kubernetes): ``command`` replaces the image's entrypoint and ``args``
its cmd; with a ``command`` and no ``args`` the image's cmd is dropped. The environment is the
image's with the container's variables over it; the working directory is the container's, else
the image's, else ``/``; the user is the image's (numeric, or a name looked up in the image's
``/etc/passwd``).

Networking: the config names no network namespace, so a container stays in its shim's: the
group's own, with only a loopback, shared by the group's containers (as the containers of one
ECI group share theirs). A container listening on port P is reachable from this machine at the
group's address and P (``network``); it reaches nothing outside its group (no outbound access).
Every other namespace (pid, mount, ipc, uts) is the container's own.

Confinement, at least as tight as Docker's defaults: Docker's capabilities, no new privileges,
podman's seccomp profile with Docker's namespace rules (``seccomp``), and a device cgroup that
lets a container use only the devices runc and containerd allow by default.

Each container's cgroup is inside its group's (``cgroupsPath``; see ``cgroups``), where the
group's CPU, memory and process limits hold; a container's own CPU and memory limits apply
inside it, when the kernel offers the controllers (``limits``).
"""

from __future__ import annotations

import json
import os
import resource
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import seccomp
from .cgroups import CPU_PERIOD, GroupLimits

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The capabilities a container gets by default from Docker and containerd.
DEFAULT_CAPS = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]
# The devices a container may use (runc's and containerd's defaults), as (major, minor); None is
# every minor. Every other device is refused, even when a container makes its node (mknod).
ALLOWED_DEVICES = {
    "null": (1, 3),
    "zero": (1, 5),
    "full": (1, 7),
    "random": (1, 8),
    "urandom": (1, 9),
    "tty": (5, 0),
    "console": (5, 1),
    "ptmx": (5, 2),
    "pts": (136, None),
}


class BundleError(ValueError):
    """The container cannot be described (nothing to run, a user not in the image)."""


@dataclass(frozen=True)
class ContainerSettings:
    """What a container asks for, on top of its image."""

    name: str
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    ports: list[int] = field(default_factory=list)
    cpu: float | None = None
    memory_gib: float | None = None


def process_args(image_config: dict[str, Any], settings: ContainerSettings) -> list[str]:
    config = image_config.get("config") or {}
    entrypoint = list(config.get("Entrypoint") or [])
    cmd = list(config.get("Cmd") or [])
    if settings.command:
        argv = [*settings.command, *settings.args]
    elif settings.args:
        argv = [*entrypoint, *settings.args]
    else:
        argv = [*entrypoint, *cmd]
    if not argv:
        raise BundleError(
            f"container {settings.name}: nothing to run (no command, and the image has "
            "neither an entrypoint nor a cmd)"
        )
    return argv


def environment(image_config: dict[str, Any], settings: ContainerSettings) -> list[str]:
    merged: dict[str, str] = {}
    for item in (image_config.get("config") or {}).get("Env") or []:
        key, _, value = str(item).partition("=")
        merged[key] = value
    merged.update(settings.env)
    merged.setdefault("PATH", DEFAULT_PATH)
    merged.setdefault("HOSTNAME", settings.name)
    return [f"{k}={v}" for k, v in merged.items()]


def _find(layers_top_first: list[Path], path: str, hops: int = 0) -> Path | None:
    """Where the absolute ``path`` is in the image (top layer first), following symbolic links
    as the container would see them; None when the image does not hold it."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        here = "/".join([*resolved, part])
        found = _entry(layers_top_first, here)
        if found is None or stat.S_ISCHR(found[1]):
            return None  # absent, or a whiteout
        if stat.S_ISLNK(found[1]):
            if hops > 40:
                return None
            target = os.readlink(found[0])
            rest = "/".join(parts)
            base = "" if target.startswith("/") else "/".join(resolved)
            return _find(layers_top_first, f"/{base}/{target}/{rest}", hops + 1)
        resolved.append(part)
    if not resolved:
        return layers_top_first[0]
    joined = "/".join(resolved)
    return next((Path(p) for p in _paths(layers_top_first, joined) if os.path.exists(p)), None)


def _paths(layers_top_first: list[Path], here: str) -> Iterator[str]:
    return (os.path.join(layer, here) for layer in layers_top_first)


def _entry(layers_top_first: list[Path], here: str) -> tuple[str, int] | None:
    """The topmost entry at ``here`` (relative to the layers): its path and mode (lstat: one
    system call a layer, a symbolic link not followed)."""
    for path in _paths(layers_top_first, here):
        try:
            return path, os.lstat(path).st_mode
        except OSError:  # absent, or a file where a directory would be
            continue
    return None


def check_executable(argv0: str, env: list[str], layers_top_first: list[Path]) -> None:
    """Refuse to start a container whose program is not in its image (crun would fail it at
    every restart)."""
    if "/" in argv0:
        candidates = [argv0 if argv0.startswith("/") else f"/{argv0}"]
    else:
        path = next((e[5:] for e in env if e.startswith("PATH=")), DEFAULT_PATH)
        candidates = [f"{d.rstrip('/')}/{argv0}" for d in path.split(":") if d.startswith("/")]
    for candidate in candidates:
        found = _find(layers_top_first, candidate)
        if found is not None and found.is_file():
            return
    raise BundleError(f"{argv0} is not in the image (looked for {', '.join(candidates[:4])})")


def _lookup(layers_top_first: list[Path], file: str, name: str) -> tuple[int, int] | None:
    """``name`` in the image's ``/etc/passwd`` or ``/etc/group``: (id, primary gid)."""
    for layer in layers_top_first:
        path = layer / "etc" / file
        if path.is_symlink() or not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            fields = line.split(":")
            if len(fields) >= 4 and fields[0] == name and fields[2].isdigit():
                gid = fields[3] if fields[3].isdigit() else fields[2]
                return int(fields[2]), int(gid)
        return None
    return None


def resolve_user(user: str, layers_top_first: list[Path]) -> tuple[int, int]:
    if not user:
        return 0, 0
    name, _, group = user.partition(":")
    if name.isdigit():
        uid, gid = int(name), 0
    else:
        found = _lookup(layers_top_first, "passwd", name)
        if found is None:
            raise BundleError(f"user {name!r} is not in the image's /etc/passwd")
        uid, gid = found
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            found = _lookup(layers_top_first, "group", group)
            if found is None:
                raise BundleError(f"group {group!r} is not in the image's /etc/group")
            gid = found[0]
    return uid, gid


@dataclass(frozen=True)
class Limits:
    """Which cgroup controllers the kernel lets containers use."""

    cpu: bool = False
    memory: bool = False


def resources(
    settings: ContainerSettings, limits: Limits, group: GroupLimits | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"devices": device_rules()}
    if settings.memory_gib and limits.memory:
        out["memory"] = {"limit": int(settings.memory_gib * (1 << 30))}
    if settings.cpu and limits.cpu:
        # No more than the group's: cgroup v1 refuses a quota above its parent's.
        cpu = min(settings.cpu, group.cpu) if group and group.cpu else settings.cpu
        out["cpu"] = {"quota": int(cpu * CPU_PERIOD), "period": CPU_PERIOD}
    return out


def device_rules() -> list[dict[str, Any]]:
    """Deny every device, then allow ``ALLOWED_DEVICES`` (read, write, mknod)."""
    rules: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
    for major, minor in ALLOWED_DEVICES.values():
        rule = {"allow": True, "type": "c", "major": major, "access": "rwm"}
        rules.append(rule if minor is None else {**rule, "minor": minor})
    return rules


_filters: dict[tuple[int, tuple[str, ...]], dict[str, Any]] = {}


def seccomp_filter(caps: list[str]) -> dict[str, Any]:
    """``linux.seccomp`` for a container with ``caps`` (converted once a profile version);
    ``seccomp.SeccompUnavailable`` when the profile is missing."""
    profile = seccomp.read_profile()
    key = (id(profile), tuple(caps))
    if key not in _filters:
        _filters.clear()
        _filters[key] = seccomp.linux_seccomp(profile, caps)
    return _filters[key]


def runtime_config(
    image_config: dict[str, Any],
    settings: ContainerSettings,
    rootfs: str,
    layers_top_first: list[Path],
    limits: Limits,
    group: GroupLimits | None = None,
    cgroups_path: str | None = None,
) -> dict[str, Any]:
    """The ``config.json`` of the container's bundle (rootfs given relative to the bundle);
    ``cgroups_path`` is the container's cgroup, inside its group's (which has ``group``)."""
    config = image_config.get("config") or {}
    uid, gid = resolve_user(str(config.get("User") or ""), layers_top_first)
    cwd = settings.working_dir or config.get("WorkingDir") or "/"
    if not cwd.startswith("/"):
        raise BundleError(f"container {settings.name}: working directory {cwd!r} is not absolute")
    caps = DEFAULT_CAPS
    args = process_args(image_config, settings)
    env = environment(image_config, settings)
    if layers_top_first:
        check_executable(args[0], env, layers_top_first)
    spec: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": gid},
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "rlimits": [_nofile()],
            "noNewPrivileges": True,
        },
        "root": {"path": rootfs, "readonly": False},
        "hostname": settings.name,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
            # The host's name resolution files (localhost; no server outside the group answers).
            *(
                {
                    "destination": f"/etc/{name}",
                    "type": "bind",
                    "source": f"/etc/{name}",
                    "options": ["rbind", "ro"],
                }
                for name in ("resolv.conf", "hosts")
                if Path(f"/etc/{name}").is_file()
            ),
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")],
            "resources": resources(settings, limits, group),
            "seccomp": seccomp_filter(caps),
            "maskedPaths": [
                "/proc/acpi",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/proc/scsi",
                "/sys/firmware",
            ],
            "readonlyPaths": [
                "/proc/asound",
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger",
            ],
        },
    }
    if cgroups_path:
        spec["linux"]["cgroupsPath"] = cgroups_path
    return spec


def _nofile() -> dict[str, Any]:
    """As many open files as this machine lets its own processes have (no more: refused)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {"type": "RLIMIT_NOFILE", "hard": hard, "soft": hard}


def write_bundle(directory: Path, spec: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.json"
    path.write_text(json.dumps(spec))  # compact: the C encoder (indenting is pure Python)
    return path
