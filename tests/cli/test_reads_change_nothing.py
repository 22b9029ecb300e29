"""Every command that only looks (`caches list|show|events`, `usage`, `match explain`, `groups
list|show|logs`) changes nothing, also where recovery would act: a build whose process was
killed, a cache past its retention, a group whose supervisor died and one whose creator died
before recording it. Each shows what the records and the process table say."""

import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.engine.models import ContainerGroupSpec, ImageCacheSpec
from eci_imagecache.runtime import host
from tests.support.fault_proxy import Fault, FaultProxy

from ..conftest import Registry, missing, shim_processes
from .test_cli import cli  # noqa: F401 - the fixture
from .test_groups_cli import files, store_contents, what_runs

THREE_DAYS_AGO = (datetime.now(UTC) - timedelta(days=3)).isoformat()

# A writer in a child process whose clock is three days back (so that it does not expire the
# cache the test made "three days ago"), which then builds a cache or starts a group and dies.
CHILD = """
import os, signal, sys
from datetime import datetime
from pathlib import Path
from eci_imagecache.backends.local import groups
from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.engine.models import ContainerGroupSpec, ImageCacheSpec
data, when, action, image = sys.argv[1:5]
backend = LocalBackend(data_dir=Path(data), clock=lambda: datetime.fromisoformat(when))
if action == "build":
    backend.create_image_cache(ImageCacheSpec(name="interrupted", images=[image]))
else:
    original = groups.ContainerGroups._start
    def start_then_die(self, record, spec, prepared):
        original(self, record, spec, prepared)
        print(record.id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # running, but never recorded
    groups.ContainerGroups._start = start_then_die
    backend.create_container_group(ContainerGroupSpec(
        name="unrecorded", cache="none",
        containers=[{"name": "main", "image": image,
                     "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]}]))
"""


def child(data: Path, action: str, image: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data), THREE_DAYS_AGO, action, image],
        text=True,
        **kwargs,
    )


def claims(data: Path) -> list[str]:
    return [line for line in store_contents(data / "state.db")[1] if 'INSERT INTO "builds"' in line]


def supervisors(data: Path) -> list[int]:
    """Shims (running a group or kept ready) of the store at ``data``."""
    return shim_processes(data)


def orphan_groups(
    data: Path, image: str, shim: int, after_creator: Callable[[], object] = lambda: None
) -> str:
    """A group whose creator is killed before it records it, then the supervisor ``shim``
    killed (its container runs on); returns the unrecorded group's id once every supervisor
    has ended. ``after_creator`` runs once the creator is gone."""
    creator = child(data, "group", image, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = creator.communicate(timeout=120)
    assert creator.returncode == -signal.SIGKILL, err
    unrecorded = out.strip()
    after_creator()
    os.kill(shim, signal.SIGKILL)
    wait_for(lambda: not host.alive(shim), "the supervisor did not die")
    # The unrecorded group's supervisor saw its starter die and stopped the group.
    wait_for(lambda: not what_runs([unrecorded]), "the unrecorded group still runs")
    # ...and ended, as did the shims kept ready by the writers that are gone: the last
    # to close the database folds its log in (the file changes then, reads or not).
    wait_for(lambda: not supervisors(data), "a supervisor still runs")
    return unrecorded


def wait_for(condition, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_read_commands_recover_nothing_and_show_what_recovery_would_act_on(
    cli,  # noqa: F811
    tmp_path: Path,
    registry: Registry,
) -> None:
    if host.unavailable():
        missing(f"containers cannot run here: {host.unavailable()}")
    data = tmp_path / "data"
    runnable = registry.runnable.references(registry.host)["job_ok"]
    old = datetime.fromisoformat(THREE_DAYS_AGO)
    writer = LocalBackend(data_dir=data, clock=lambda: old)
    group = writer.create_container_group(
        ContainerGroupSpec(
            name="unsupervised",
            cache="none",
            containers=[{"name": "main", "image": runnable, "command": ["sleep", "600"]}],
        )
    )
    shim = writer.ctx.runtime.state.group(group.id).shim_pid
    # Retention of 2 days, made 3 days ago: due for deletion, not yet deleted.
    expired = writer.create_image_cache(
        ImageCacheSpec(name="old", images=[registry.ref("demo/web:1.0")], retention_days=2)
    )
    kept = writer.create_image_cache(
        ImageCacheSpec(name="kept", images=[registry.ref("demo/worker:1.0")])
    )
    del writer
    gc.collect()
    # A build that is slow to fetch, killed once the group's creator (below) has been and gone:
    # each writer's opening recovers, so the build must be alive while they run.
    proxy = FaultProxy(registry.server.url, [Fault(r"GET /v2/.*/blobs/", slow_body=0.2)])
    builder = child(data, "build", f"{proxy.host}/demo/tools:1.0", stderr=subprocess.DEVNULL)
    unrecorded = None
    try:
        wait_for(lambda: claims(data), "the build never claimed its cache")

        def kill_builder() -> None:
            os.kill(builder.pid, signal.SIGKILL)
            builder.wait()

        unrecorded = orphan_groups(data, runnable, shim, after_creator=kill_builder)
        running = what_runs([group.id, unrecorded])
        assert any(f"{group.id}-main" in line for line in running), running
        assert claims(data)  # the dead builder's claim, left for recovery
        before = (store_contents(data / "state.db"), files(data), running)

        listed = json.loads(cli("--json", "caches", "list").stdout)
        table = cli("caches", "list").stdout
        [interrupted] = [c for c in listed if c["name"] == "interrupted"]
        shown = json.loads(cli("--json", "caches", "show", interrupted["id"]).stdout)
        cli("caches", "show", interrupted["id"])
        gone = cli("caches", "show", expired.id, code=3).stderr
        events = json.loads(cli("--json", "caches", "events", interrupted["id"]).stdout)
        cli("caches", "events", interrupted["id"])
        usage = json.loads(cli("--json", "usage").stdout)
        cli("usage")
        explained = json.loads(
            cli("--json", "match", "explain", registry.ref("demo/web:1.0")).stdout
        )
        cli("match", "explain", registry.ref("demo/web:1.0"))
        groups = {g["id"]: g for g in json.loads(cli("--json", "groups", "list").stdout)}
        cli("groups", "show", group.id)
        cli("groups", "logs", group.id)

        after = (store_contents(data / "state.db"), files(data), what_runs([group.id, unrecorded]))
        assert after == before
        assert claims(data)

        # What the records and the process table say: the build's process is gone.
        reason = f"build interrupted: process {builder.pid} ended before it finished"
        assert (shown["status"], shown["usable"]) == ("Failed", False)
        assert shown["failure"].startswith(reason)
        assert "recovery" in shown["failure"]
        assert interrupted["status"] == "Failed" and "Failed" in table
        assert [e["reason"] for e in events][:2] == ["Created", "Building"]
        # Past its retention: gone for every read, though still in the store.
        assert {c["id"] for c in listed} == {kept.id, interrupted["id"]}
        assert (
            gone.strip()
            == f"error: image cache {expired.id} not found (retention of 2 days elapsed)"
        )
        assert usage["manual"] == {"used": 2, "quota": 50}
        candidates = {c["cache_id"] for c in explained["ranking"] + explained["rejected"]}
        assert expired.id not in candidates and explained["chosen"] != expired.id
        assert groups[group.id]["status"] == "Failed"
        assert groups[unrecorded]["status_reason"].startswith("not recorded: process ")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(builder.pid, signal.SIGKILL)
        builder.wait()
        proxy.close()
        # A writer now: recovery fails the build and removes the unrecorded group.
        writer = LocalBackend(data_dir=data)
        writer.delete_container_group(group.id)
    assert what_runs([group.id, *([unrecorded] if unrecorded else [])]) == []
    assert list((data / "groups").iterdir()) == []
