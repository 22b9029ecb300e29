"""Container groups that really run (crun on overlay mounts of the unpacked layers): states and
exit codes, a server reachable on its port, logs, what deleting and recovery leave behind."""

import ipaddress
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from eci_imagecache.backends.base import NotFound
from eci_imagecache.engine.models import ContainerGroupSpec, GroupStatus, ImageCacheSpec
from eci_imagecache.runtime import host
from eci_imagecache.testing.registry import free_port

from ..conftest import Registry, missing


@pytest.fixture(autouse=True)
def runtime_here() -> None:
    reason = host.unavailable()
    if reason:
        missing(f"containers cannot run here: {reason}")


def spec(registry: Registry, image: str, **kw: object) -> ContainerGroupSpec:
    container = {"name": "main", "image": registry.runnable.references(registry.host)[image]}
    container.update(kw.pop("container", {}))  # type: ignore[arg-type]
    kw.setdefault("restart_policy", "Never")
    return ContainerGroupSpec(name=f"{image.replace('_', '-')}-group", containers=[container], **kw)


def settle(backend, group_id: str, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = backend.get_container_group(group_id)
        if record.status in (GroupStatus.SUCCEEDED, GroupStatus.FAILED):
            return record
        time.sleep(0.05)
    raise AssertionError(f"{group_id} did not end: {backend.get_container_group(group_id)}")


def traces(group_id: str) -> list[str]:
    """Processes and mounts (in any mount namespace) that mention the group."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if group_id in (proc / "cmdline").read_bytes().decode(errors="replace"):
                found.append(f"process {proc.name}")
            if group_id in (proc / "mountinfo").read_text():
                found.append(f"mount in the namespace of {proc.name}")
        except OSError:
            continue
    return found


def test_jobs_succeed_and_fail_with_their_exit_codes(backend, registry) -> None:
    ok = backend.create_container_group(spec(registry, "job_ok"))
    failing = backend.create_container_group(
        spec(registry, "job_fail", container={"env": {"EXIT_CODE": "42"}})
    )
    ok, failing = settle(backend, ok.id), settle(backend, failing.id)
    assert (ok.status, ok.containers[0].state, ok.containers[0].exit_code) == (
        GroupStatus.SUCCEEDED,
        "Terminated",
        0,
    )
    assert (failing.status, failing.containers[0].exit_code) == (GroupStatus.FAILED, 42)
    assert backend.container_logs(ok.id, "main") == b"job ran: ok\n"
    assert ok.container_start_seconds is not None
    for group in (ok, failing):
        backend.delete_container_group(group.id)
        assert traces(group.id) == []


def test_a_web_server_answers_on_its_address_and_delete_leaves_nothing(backend, registry) -> None:
    port = free_port()
    made = backend.create_container_group(
        spec(
            registry,
            "httpd",
            restart_policy="Always",
            container={"env": {"PORT": str(port)}, "ports": [port]},
        )
    )
    assert made.status == GroupStatus.RUNNING
    # At the group's own loopback address (its network is its own), with its port.
    host, _, published = made.address.rpartition(":")
    assert ipaddress.ip_address(host).is_loopback and host != "127.0.0.1"
    assert published == str(port)
    deadline = time.monotonic() + 10
    while True:
        try:
            page = httpx.get(f"http://{made.address}/", timeout=1)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, backend.container_logs(made.id, "main")
            time.sleep(0.05)
    assert page.status_code == 200 and "eci-imagecache demo" in page.text
    assert traces(made.id)
    backend.delete_container_group(made.id)
    assert traces(made.id) == []
    assert not (backend.ctx.runtime.groups_dir / made.id).exists()
    with pytest.raises(NotFound):
        backend.get_container_group(made.id)


def test_starting_from_a_cache_mounts_the_layers_the_build_unpacked(backend, registry) -> None:
    image = registry.runnable.references(registry.host)["job_ok"]
    cache = backend.create_image_cache(ImageCacheSpec(name="jobs", images=[image]))
    assert any(e.message.startswith("unpacked 2 layers") for e in backend.events(cache.id))
    made = backend.create_container_group(spec(registry, "job_ok", cache="auto"))
    assert made.cache_id == cache.id and made.bytes_fetched == 0
    assert settle(backend, made.id).status == GroupStatus.SUCCEEDED
    backend.delete_container_group(made.id)


def test_an_image_that_cannot_run_fails_the_group_with_the_reason(backend, registry) -> None:
    made = backend.create_container_group(
        ContainerGroupSpec(
            name="nothing",
            cache="none",
            containers=[
                {"name": "c", "image": registry.ref("demo/web:1.0"), "command": ["/bin/nothing"]}
            ],
        )
    )
    assert made.status == GroupStatus.FAILED
    assert made.status_reason == (
        "not started: /bin/nothing is not in the image (looked for /bin/nothing)"
    )
    backend.delete_container_group(made.id)
    assert traces(made.id) == []


def test_without_a_runtime_the_group_is_prepared_and_says_why_not_started(
    backend, registry, monkeypatch
) -> None:
    monkeypatch.setenv("ECI_IMAGECACHE_CRUN", "/nonexistent/crun")
    made = backend.create_container_group(spec(registry, "job_ok"))
    assert made.status == GroupStatus.PENDING
    assert made.status_reason.startswith("prepared; not started: crun")
    backend.delete_container_group(made.id)


def test_a_creator_killed_mid_start_leaves_nothing_recovery_does_not_clean(
    backend, registry, tmp_path
) -> None:
    """A separate process creates a long-running group and is killed (SIGKILL) once the
    group's containers run but before it recorded the group: the group's supervisor sees its
    starter gone and stops the containers; recovery removes what is left."""
    image = registry.runnable.references(registry.host)["httpd"]
    script = textwrap.dedent(
        f"""
        import os, signal
        from eci_imagecache.backends.local.backend import LocalBackend
        from eci_imagecache.backends.local import groups
        from eci_imagecache.engine.models import ContainerGroupSpec
        from pathlib import Path
        backend = LocalBackend(data_dir=Path({str(backend.data_dir)!r}))
        original = groups.ContainerGroups._start
        def start_then_die(self, record, spec, prepared):
            original(self, record, spec, prepared)
            print(record.id, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        groups.ContainerGroups._start = start_then_die
        backend.create_container_group(ContainerGroupSpec(
            name="killed", cache="none",
            containers=[{{"name": "main", "image": {image!r},
                          "env": {{"PORT": "{free_port()}"}}}}]))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    group_id = done.stdout.strip()
    deadline = time.monotonic() + 20
    while traces(group_id):
        assert time.monotonic() < deadline, traces(group_id)
        time.sleep(0.05)
    state = backend.ctx.runtime.state.group(group_id)
    assert state.reason.startswith("stopped: process ") and state.reason.endswith(
        "ended before recording it"
    )
    assert state.containers[0].reason == "stopped"  # by SIGTERM: httpd stops on it
    assert (backend.ctx.runtime.groups_dir / group_id).is_dir()
    backend.recover()
    assert traces(group_id) == []
    assert not (backend.ctx.runtime.groups_dir / group_id).exists()
    assert os.listdir(backend.ctx.runtime.groups_dir) == []


def test_gc_removes_unpacked_layers_no_cache_holds_and_no_group_runs_on(backend, registry) -> None:
    image = registry.runnable.references(registry.host)["job_ok"]
    cache = backend.create_image_cache(ImageCacheSpec(name="jobs", images=[image]))
    layers = [layer.digest for layer in registry.runnable.job_ok.layers]
    assert all(backend.ctx.layers.has(d) for d in layers)
    running = backend.create_container_group(
        spec(registry, "job_ok", cache="auto", restart_policy="Always")
    )
    backend.delete_image_cache(cache.id)
    backend.gc(grace=timedelta(0))
    assert all(backend.ctx.layers.has(d) for d in layers)  # the group still runs on them
    backend.delete_container_group(running.id)
    backend.gc(grace=timedelta(0))
    assert not any(backend.ctx.layers.has(d) for d in layers)


def test_the_groups_declared_cpu_memory_and_process_limit_hold_on_its_cgroup(
    backend, registry
) -> None:
    made = backend.create_container_group(
        spec(
            registry,
            "httpd",
            restart_policy="Always",
            cpu=0.5,
            memory_gib=0.5,
            pids_limit=64,
            container={"env": {"PORT": str(free_port())}},
        )
    )
    assert made.status == GroupStatus.RUNNING, made.status_reason
    pid = (backend.ctx.runtime.groups_dir / made.id / "containers/main/pid").read_text()
    # The kernel's view: the container's cgroups, and their parent (the group's) limits.
    placed = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            placed[controller] = Path("/sys/fs/cgroup", controller, path.lstrip("/")).parent
    assert placed["memory"].name == made.id
    assert (placed["memory"] / "memory.limit_in_bytes").read_text() == f"{1 << 29}\n"
    assert (placed["cpu"] / "cpu.cfs_quota_us").read_text() == "50000\n"
    assert (placed["pids"] / "pids.max").read_text() == "64\n"
    backend.delete_container_group(made.id)
    assert not placed["memory"].exists() and not placed["pids"].exists()
