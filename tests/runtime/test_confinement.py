"""What a container cannot do, checked from inside real crun containers and against the kernel's
own files: seccomp, namespaces, devices, and the group's process, memory and storage limits."""

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from eci_imagecache.runtime import seccomp
from eci_imagecache.runtime.bundle import ContainerSettings
from eci_imagecache.runtime.cgroups import GroupLimits
from eci_imagecache.runtime.supervisor import ContainerRun, Runtime, StartError

SH = {"config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]}}
CGROUP = Path("/sys/fs/cgroup")


def run(layer: str, name: str, script: str, **kw) -> ContainerRun:
    return ContainerRun(
        ContainerSettings(name=name, command=["/bin/sh", "-c", script], **kw), SH, [layer]
    )


def finished(runtime: Runtime, group_id: str, timeout: float = 30):
    """The group once every container has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        group = runtime.group(group_id)
        if group and all(c.state == "Terminated" for c in group.containers):
            return group
        time.sleep(0.05)
    raise AssertionError(f"{group_id} did not end: {runtime.group(group_id)}")


def job(runtime: Runtime, layer: str, group_id: str, script: str, **limits) -> tuple:
    runtime.start(
        group_id, group_id, [run(layer, "main", script)], "Never", limits=GroupLimits(**limits)
    )
    group = finished(runtime, group_id)
    return group, runtime.logs(group_id, "main").decode()


def kernel_cgroup(runtime: Runtime, group_id: str, controller: str) -> Path:
    """The group's cgroup as the kernel places its container's process (its parent)."""
    pid = (runtime.groups_dir / group_id / "containers/main/pid").read_text()
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return CGROUP / controller / path.lstrip("/")
    raise AssertionError(f"no {controller} cgroup for the container")


def test_a_container_runs_under_seccomp_and_cannot_make_namespaces(runtime, busybox_layer):
    script = (
        "grep Seccomp: /proc/self/status; "
        "busybox unshare -U -r true && echo user-namespace-made || echo user-namespace-refused; "
        "busybox unshare -U -r -m true && echo mount-namespace-made || echo mount-namespace-refused"
    )
    group, out = job(runtime, busybox_layer, "grp-iso-seccomp", script)
    assert "Seccomp:\t2" in out  # filtered (SECCOMP_MODE_FILTER), as the kernel reports it
    assert "user-namespace-refused" in out and "namespace-made" not in out
    assert group.status == "Succeeded"


def test_host_devices_cannot_be_used_even_when_a_container_makes_their_node(runtime, busybox_layer):
    marker = f"eci-imagecache-device-test-{uuid.uuid4().hex}"
    script = (
        "busybox mknod /dev/kmsg2 c 1 11; "
        f"echo {marker} > /dev/kmsg2 && echo written || echo refused; "
        "echo ok > /dev/null && echo null-works; busybox head -c 4 /dev/urandom | busybox wc -c"
    )
    _, out = job(runtime, busybox_layer, "grp-iso-devices", script)
    assert "refused" in out and "written" not in out
    assert "null-works" in out and out.rstrip().endswith("4")  # the allowed devices work
    dmesg = subprocess.run(["dmesg"], capture_output=True, text=True, check=False).stdout
    assert marker not in dmesg


def test_a_fork_loop_stops_at_the_groups_pids_limit(runtime, busybox_layer):
    script = "for i in $(busybox seq 100); do sleep 30 & echo started $i; done"
    started = time.monotonic()
    group, out = job(runtime, busybox_layer, "grp-iso-pids", script, pids=50)
    assert time.monotonic() - started < 30
    assert "can't fork" in out
    count = max(int(line.split()[1]) for line in out.splitlines() if line.startswith("started"))
    assert 10 < count < 50  # the shell, its subshells and crun's process count too
    assert group.status == "Failed"


def test_the_groups_cgroup_holds_its_limits_and_goes_with_the_group(runtime, busybox_layer):
    limits = GroupLimits(cpu=0.5, memory_gib=0.25, pids=100)
    runtime.start(
        "grp-iso-cgroup", "cg", [run(busybox_layer, "main", "exec sleep 600")], limits=limits
    )
    memory = kernel_cgroup(runtime, "grp-iso-cgroup", "memory").parent
    cpu = kernel_cgroup(runtime, "grp-iso-cgroup", "cpu").parent
    pids = kernel_cgroup(runtime, "grp-iso-cgroup", "pids").parent
    assert memory.name == "grp-iso-cgroup"
    assert (memory / "memory.limit_in_bytes").read_text() == f"{1 << 28}\n"
    assert (cpu / "cpu.cfs_quota_us").read_text() == "50000\n"
    assert (cpu / "cpu.cfs_period_us").read_text() == "100000\n"
    assert (pids / "pids.max").read_text() == "100\n"
    runtime.stop("grp-iso-cgroup", grace=0.5)
    assert not memory.exists() and not cpu.exists() and not pids.exists()
    assert not list(CGROUP.glob("*/eci-imagecache/*/grp-iso-cgroup"))


def test_podmans_pids_limit_is_the_default(runtime, busybox_layer):
    conf = Path("/usr/share/containers/containers.conf").read_text()
    podman = next(
        line.split("=")[1].strip() for line in conf.splitlines() if "pids_limit =" in line
    )
    runtime.start("grp-iso-default", "d", [run(busybox_layer, "main", "exec sleep 600")])
    pids = kernel_cgroup(runtime, "grp-iso-default", "pids").parent
    assert (pids / "pids.max").read_text().strip() == podman == "2048"


def test_the_groups_memory_holds_for_a_container_without_its_own_limit(runtime, busybox_layer):
    hog = "busybox dd if=/dev/zero of=/dev/null bs=600M count=1 && echo allocated"
    group, out = job(runtime, busybox_layer, "grp-iso-oom", hog, memory_gib=0.25)
    [container] = group.containers
    assert "allocated" not in out
    assert container.exit_code == 137 and container.reason.startswith("OOMKilled")
    assert "0.25 GiB" in container.reason and group.status == "Failed"
    # The same container in a group without a memory limit allocates its 600 MiB.
    group, out = job(runtime, busybox_layer, "grp-iso-roomy", hog)
    assert "allocated" in out and group.status == "Succeeded"
    # Its own limit holds too, and is named (its cgroup is watched once it runs: a second).
    own = run(busybox_layer, "main", f"sleep 1; {hog}", memory_gib=0.25)
    runtime.start("grp-iso-own", "own", [own], "Never")
    [container] = finished(runtime, "grp-iso-own").containers
    assert container.exit_code == 137
    assert container.reason == "OOMKilled: killed by signal 9 at its limit of 0.25 GiB"


def test_a_group_is_evicted_when_its_writable_layers_outgrow_its_storage(runtime, busybox_layer):
    limit = 16 / 1024  # GiB
    writer = "busybox dd if=/dev/zero of=/big bs=1M count=40 && echo wrote; exec sleep 600"
    small = "busybox dd if=/dev/zero of=/small bs=1M count=1 && exec sleep 600"
    limits = GroupLimits(ephemeral_storage_gib=limit)
    runtime.start("grp-iso-evict", "ev", [run(busybox_layer, "main", writer)], limits=limits)
    runtime.start("grp-iso-fits", "fits", [run(busybox_layer, "main", small)], limits=limits)
    group = finished(runtime, "grp-iso-evict", timeout=15)
    assert group.status == "Failed"
    assert group.reason.startswith("Evicted: ephemeral storage usage ")
    assert group.reason.endswith("exceeds the group's limit of 16.0 MiB")
    assert "Evicted" in group.containers[0].reason
    upper = runtime.groups_dir / "grp-iso-evict/containers/main/upper"
    deadline = time.monotonic() + 10
    while upper.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not upper.exists()  # its writes are gone from the host's disk
    fits = runtime.group("grp-iso-fits")
    assert fits.status == "Running", fits.reason


def test_a_missing_seccomp_profile_refuses_the_group(runtime, busybox_layer, tmp_path, monkeypatch):
    monkeypatch.setattr(seccomp, "PROFILE", tmp_path / "absent.json")
    with pytest.raises(StartError, match=r"seccomp profile .*absent\.json is missing"):
        runtime.start("grp-iso-noseccomp", "n", [run(busybox_layer, "main", "true")])
    group = runtime.group("grp-iso-noseccomp")
    assert group.status == "Failed" and "seccomp" in group.reason
    assert not list(CGROUP.glob("*/eci-imagecache/*/grp-iso-noseccomp"))


def test_reconcile_removes_a_cgroup_left_by_a_group_gone(runtime):
    left = CGROUP / "pids/eci-imagecache" / runtime.cgroup_key / "grp-iso-leftover"
    (left / "main").mkdir(parents=True)
    try:
        runtime.reconcile(lambda _: False)
        assert not left.exists()
    finally:
        for directory in (left / "main", left):
            if directory.exists():
                os.rmdir(directory)


def test_containers_load_the_filter_compiled_ahead_or_crun_compiles_it(
    runtime, busybox_layer, tmp_path, monkeypatch
):
    script = "grep Seccomp: /proc/self/status; busybox unshare -U -r true || echo refused"
    _, out = job(runtime, busybox_layer, "grp-iso-ahead", script)
    config = json.loads(
        (runtime.groups_dir / "grp-iso-ahead/containers/main/config.json").read_text()
    )
    assert seccomp.BPF_ANNOTATION in config["annotations"]
    assert "Seccomp:\t2" in out and "refused" in out
    # Where it cannot be compiled ahead, crun compiles it: the container is filtered all the same.
    (tmp_path / "file").write_text("")
    monkeypatch.setattr(seccomp, "COMPILED", tmp_path / "file" / "seccomp")
    monkeypatch.setattr(seccomp, "_compiled", {})
    _, out = job(runtime, busybox_layer, "grp-iso-behind", script)
    config = json.loads(
        (runtime.groups_dir / "grp-iso-behind/containers/main/config.json").read_text()
    )
    assert "annotations" not in config and config["linux"]["seccomp"]["syscalls"]
    assert "Seccomp:\t2" in out and "refused" in out
