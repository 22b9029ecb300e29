"""The containers' seccomp filter: podman's default profile, as the OCI runtime spec wants it.

The profile is the one Debian's ``golang-github-containers-common`` installs for podman
(``/usr/share/containers/seccomp.json``, installed by ``scripts/install-system-deps.sh``), read
from there at run time. It is in moby's format (``archMap``, and rules with ``includes`` /
``excludes`` of capabilities, architectures and kernel versions); ``linux_seccomp`` turns it into
the runtime spec's ``linux.seccomp`` for one container with the rules moby and containers/common
apply (``setupSeccomp``): the architectures of this machine, and each rule kept only when
  - no excluded architecture is this one, no excluded capability is in the bounding set and the
    kernel is older than an excluded ``minKernel``;
  - the included architectures name this one, every included capability is in the bounding set
    and the kernel is at least an included ``minKernel``.

Podman's profile lets a container create namespaces (``unshare``, ``clone`` with namespace
flags, ``mount`` inside a user namespace), which Docker's closes: a container without
``CAP_SYS_ADMIN`` gets Docker's rules for those calls on top (``docker_namespace_rules``).

A profile missing at run time is an error (``SeccompUnavailable``): no container runs without
its filter.

Turning the filter into BPF costs crun ~15 ms of CPU at every container start (libseccomp, for
three architectures), which this crun build does not cache. ``compiled_filter`` has crun make
it once (``crun create`` of an empty container, whose state keeps the BPF) and keeps it under
``/run`` (emptied at boot) by the filter, crun and kernel; containers get it through crun's
``run.oci.seccomp_bpf_data`` annotation: the same program, loaded as crun would load it.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import host

PROFILE = Path("/usr/share/containers/seccomp.json")
COMPILED = Path("/run/eci-imagecache/seccomp")
BPF_ANNOTATION = "run.oci.seccomp_bpf_data"

# platform.machine() -> (the profile's arch name, as Go's GOARCH maps it; the libseccomp arch)
ARCHES = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "i686": ("x86", "SCMP_ARCH_X86"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
    "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
}

# Calls Docker's default profile (moby, profiles/seccomp/default.json) allows only to a
# container holding CAP_SYS_ADMIN; podman's allows them to every container.
SYS_ADMIN_CALLS = (
    "bpf",
    "clone",
    "clone3",
    "fanotify_init",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "open_tree",
    "perf_event_open",
    "quotactl",
    "quotactl_fd",
    "setdomainname",
    "sethostname",
    "setns",
    "syslog",
    "umount",
    "umount2",
    "unshare",
)
# clone(2) flags that make a namespace (linux/sched.h).
NAMESPACE_FLAGS = (
    0x00020000  # CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
)


class SeccompUnavailable(RuntimeError):
    """The seccomp profile cannot be read: containers are not started without one."""


_read: dict[tuple[str, int, int], dict[str, Any]] = {}


def read_profile(path: Path | None = None) -> dict[str, Any]:
    """The profile (``PROFILE`` unless given; parsed once for each version of the file)."""
    path = path or PROFILE
    try:
        seen = path.stat()
        key = (str(path), seen.st_mtime_ns, seen.st_size)
        if key not in _read:
            _read.clear()
            _read[key] = json.loads(path.read_bytes())
        return _read[key]
    except FileNotFoundError:
        raise SeccompUnavailable(
            f"the seccomp profile {path} is missing (Debian's golang-github-containers-common "
            "installs it; scripts/install-system-deps.sh does): containers do not run without it"
        ) from None
    except (OSError, ValueError) as err:
        raise SeccompUnavailable(f"the seccomp profile {path} cannot be read: {err}") from err


def kernel_version(release: str | None = None) -> tuple[int, int]:
    """(major, minor) of a kernel release such as ``6.18.44-fc``."""
    found = re.match(r"(\d+)\.(\d+)", release or platform.release())
    if not found:
        raise SeccompUnavailable(f"cannot read the kernel version from {release!r}")
    return int(found[1]), int(found[2])


def _applies(rule: dict[str, Any], arch: str, caps: set[str], kernel: tuple[int, int]) -> bool:
    excludes = rule.get("excludes") or {}
    includes = rule.get("includes") or {}
    if arch in (excludes.get("arches") or []):
        return False
    if caps & set(excludes.get("caps") or []):
        return False
    if excludes.get("minKernel") and kernel >= kernel_version(excludes["minKernel"]):
        return False
    if includes.get("arches") and arch not in includes["arches"]:
        return False
    if not set(includes.get("caps") or []) <= caps:
        return False
    return not (includes.get("minKernel") and kernel < kernel_version(includes["minKernel"]))


def _syscall(rule: dict[str, Any]) -> dict[str, Any]:
    if rule.get("name") and rule.get("names"):
        raise SeccompUnavailable("a rule of the seccomp profile has both 'name' and 'names'")
    out: dict[str, Any] = {
        "names": list(rule.get("names") or [rule["name"]]),
        "action": rule["action"],
    }
    if rule.get("errnoRet") is not None:
        out["errnoRet"] = rule["errnoRet"]
    if rule.get("args"):
        out["args"] = [
            {
                "index": a["index"],
                "value": a["value"],
                "valueTwo": a.get("valueTwo", 0),
                "op": a["op"],
            }
            for a in rule["args"]
        ]
    return out


def linux_seccomp(
    profile: dict[str, Any],
    capabilities: list[str],
    machine: str | None = None,
    release: str | None = None,
) -> dict[str, Any]:
    """``linux.seccomp`` for a container whose bounding set is ``capabilities``."""
    machine = machine or platform.machine()
    if machine not in ARCHES:
        raise SeccompUnavailable(f"no seccomp architecture known for {machine}")
    arch, scmp_arch = ARCHES[machine]
    caps = set(capabilities)
    kernel = kernel_version(release)
    out: dict[str, Any] = {"defaultAction": profile["defaultAction"]}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    if profile.get("architectures"):
        out["architectures"] = list(profile["architectures"])
    for entry in profile.get("archMap") or []:
        if entry["architecture"] == scmp_arch:
            out["architectures"] = [scmp_arch, *(entry.get("subArchitectures") or [])]
    syscalls = [
        _syscall(r) for r in profile.get("syscalls") or [] if _applies(r, arch, caps, kernel)
    ]
    if "CAP_SYS_ADMIN" not in caps:
        syscalls = docker_namespace_rules(syscalls, arch, caps)
    out["syscalls"] = syscalls
    return out


def docker_namespace_rules(
    syscalls: list[dict[str, Any]], arch: str, caps: set[str]
) -> list[dict[str, Any]]:
    """Docker's rules for a container without CAP_SYS_ADMIN over podman's: the calls that make
    or enter namespaces, or mount, are refused (EPERM); ``clone`` is allowed without namespace
    flags, and ``clone3`` (whose flags a filter cannot read) says ENOSYS, so that the C library
    falls back to ``clone``."""
    closed = set(SYS_ADMIN_CALLS) - ({"syslog"} if "CAP_SYSLOG" in caps else set())
    kept = []
    for rule in syscalls:
        if rule["action"] == "SCMP_ACT_ALLOW":
            names = [n for n in rule["names"] if n not in closed]
            if not names:
                continue
            rule = {**rule, "names": names}
        kept.append(rule)
    # s390 takes clone's flags second (moby's profile says so).
    flags_index = 1 if arch in ("s390", "s390x") else 0
    return [
        *kept,
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [
                {
                    "index": flags_index,
                    "value": NAMESPACE_FLAGS,
                    "valueTwo": 0,
                    "op": "SCMP_CMP_MASKED_EQ",
                }
            ],
        },
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
        {
            "names": sorted(closed - {"clone", "clone3"}),
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": errno.EPERM,
        },
    ]


_compiled: dict[str, str] = {}


def compiled_filter(crun: str, config: dict[str, Any]) -> str | None:
    """``config`` (``linux.seccomp``) as crun compiles it, base64 (the annotation's form); None
    when crun could not make it (then crun compiles it at each start, as without this)."""
    crun = os.path.realpath(crun)
    seen = os.stat(crun)
    identity = [
        config,
        crun,
        seen.st_size,
        seen.st_mtime_ns,
        platform.release(),
        platform.version(),
    ]
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    if key in _compiled:
        return _compiled[key]
    kept = COMPILED / f"{key}.bpf"
    try:
        data = kept.read_bytes()
    except OSError:  # not made yet (or its directory cannot be had: then it will not be)
        data = _compile(crun, config, key)
        if data is None:
            return None
    _compiled[key] = base64.b64encode(data).decode()
    return _compiled[key]


def _compile(crun: str, config: dict[str, Any], key: str) -> bytes | None:
    """Have crun make the BPF: it creates (never starts) a container of nothing with the filter,
    in a state directory of its own, whose ``seccomp.bpf`` is then kept."""
    try:
        COMPILED.mkdir(parents=True, exist_ok=True, mode=0o700)
        work = Path(tempfile.mkdtemp(prefix="compile-", dir=COMPILED))
    except OSError as err:
        print(f"seccomp filter not compiled ahead: {err}", file=sys.stderr)
        return None
    try:
        rootfs = work / "rootfs"
        (rootfs / "dev").mkdir(parents=True)
        (rootfs / "nothing").touch(mode=0o755)  # crun checks that the program exists
        spec = {
            "ociVersion": "1.0.2",
            "process": {"args": ["/nothing"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "root": {"path": "rootfs"},
            "mounts": [{"destination": "/dev", "type": "tmpfs", "source": "tmpfs"}],
            "linux": {"namespaces": [{"type": "mount"}], "seccomp": config},
        }
        (work / "config.json").write_text(json.dumps(spec))
        state, name = work / "state", f"eci-imagecache-seccomp-{os.getpid()}"
        script = (
            '"$0" --root "$1" create --bundle "$2" "$3" && '
            'cat "$1/$3/seccomp.bpf" > "$2/filter.bpf"; "$0" --root "$1" delete --force "$3"'
        )
        argv = ["sh", "-c", script, crun, str(state), str(work), name]
        if host.cgroup_hybrid():  # crun refuses that layout: it runs where v2 is unmounted
            script = f"umount -l {host.UNIFIED} && {script}"
            argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script]
            argv += [crun, str(state), str(work), name]
        done = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, check=False
        )
        data = (work / "filter.bpf").read_bytes() if (work / "filter.bpf").is_file() else b""
        if not data or len(data) % 8:  # BPF instructions are 8 bytes each
            print(f"seccomp filter not compiled ahead: {done.stderr.strip()}", file=sys.stderr)
            return None
        partial = COMPILED / f".{key}.{os.getpid()}"
        partial.write_bytes(data)
        partial.replace(COMPILED / f"{key}.bpf")
        return data
    except (OSError, subprocess.SubprocessError) as err:
        print(f"seccomp filter not compiled ahead: {err}", file=sys.stderr)
        return None
    finally:
        shutil.rmtree(work, ignore_errors=True)
