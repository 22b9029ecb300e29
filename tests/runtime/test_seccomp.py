"""podman's seccomp profile (as Debian installs it) turned into the runtime spec's form, with
moby's rules for capabilities, architectures and kernel versions, and Docker's namespace rules."""

from pathlib import Path

import pytest

from eci_imagecache.runtime import seccomp
from eci_imagecache.runtime.bundle import DEFAULT_CAPS


@pytest.fixture
def profile() -> dict:
    # Installed by scripts/install-system-deps.sh: missing, it is a failure (no skip).
    return seccomp.read_profile()


def allowed(config: dict, name: str) -> list[dict]:
    return [r for r in config["syscalls"] if name in r["names"] and r["action"] == "SCMP_ACT_ALLOW"]


def test_the_profile_keeps_its_default_and_this_machines_architectures(profile):
    config = seccomp.linux_seccomp(profile, DEFAULT_CAPS, machine="x86_64")
    assert config["defaultAction"] == profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert config["defaultErrnoRet"] == profile["defaultErrnoRet"]
    amd64 = next(a for a in profile["archMap"] if a["architecture"] == "SCMP_ARCH_X86_64")
    assert config["architectures"] == ["SCMP_ARCH_X86_64", *amd64["subArchitectures"]]
    assert allowed(config, "arch_prctl")  # included for amd64
    assert not allowed(config, "s390_runtime_instr")  # included for s390 only
    # The runtime spec's fields only (the profile's "errno" names and comments are not).
    fields = {"names", "action", "errnoRet", "args"}
    assert all(rule.keys() <= fields for rule in config["syscalls"])


def test_rules_follow_the_capabilities_of_the_container(profile):
    without = seccomp.linux_seccomp(profile, DEFAULT_CAPS, machine="x86_64")
    with_admin = seccomp.linux_seccomp(profile, [*DEFAULT_CAPS, "CAP_SYS_ADMIN"], machine="x86_64")
    # The profile allows these only with CAP_SYS_ADMIN and refuses them (EPERM) without.
    for name in ("bpf", "perf_event_open"):
        assert not allowed(without, name) and allowed(with_admin, name)
        refused = [r for r in without["syscalls"] if name in r["names"]]
        assert refused and all(r["errnoRet"] == 1 for r in refused)
    assert allowed(without, "chroot")  # CAP_SYS_CHROOT is one of Docker's defaults


def test_docker_closes_what_podman_leaves_open_to_a_container_without_sys_admin(profile):
    podman = {r["action"]: r for r in profile["syscalls"] if "unshare" in r["names"]}
    assert "SCMP_ACT_ALLOW" in podman  # podman's profile lets containers unshare
    config = seccomp.linux_seccomp(profile, DEFAULT_CAPS, machine="x86_64")
    for name in ("unshare", "setns", "mount", "umount2", "clone3"):
        assert not allowed(config, name)
    (clone,) = allowed(config, "clone")
    assert clone["args"] == [
        {"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
    ]
    admin = seccomp.linux_seccomp(profile, [*DEFAULT_CAPS, "CAP_SYS_ADMIN"], machine="x86_64")
    assert allowed(admin, "unshare") and not allowed(admin, "clone")[0].get("args")


def test_kernel_versions_include_and_exclude_rules():
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["new_call"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "5.6"}},
            {"names": ["old_way"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "5.6"}},
            {"name": "single", "action": "SCMP_ACT_ALLOW"},
        ],
    }
    old = seccomp.linux_seccomp(profile, ["CAP_SYS_ADMIN"], machine="x86_64", release="5.4.0-1")
    new = seccomp.linux_seccomp(profile, ["CAP_SYS_ADMIN"], machine="x86_64", release="6.18.44")
    assert [r["names"] for r in old["syscalls"]] == [["old_way"], ["single"]]
    assert [r["names"] for r in new["syscalls"]] == [["new_call"], ["single"]]


def test_a_missing_profile_is_an_error_naming_the_file_and_the_package(tmp_path: Path):
    with pytest.raises(seccomp.SeccompUnavailable, match="golang-github-containers-common"):
        seccomp.read_profile(tmp_path / "seccomp.json")
