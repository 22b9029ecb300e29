"""``eci-imagecache groups``: groups made by the local backend, read through the real CLI."""

import contextlib
import gc
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.engine.models import ContainerGroupSpec
from eci_imagecache.runtime import host

from ..conftest import Registry, missing
from .test_cli import cli  # noqa: F401 - the fixture


@pytest.fixture
def finished_job(tmp_path, registry: Registry):
    if host.unavailable():
        missing(f"containers cannot run here: {host.unavailable()}")
    backend = LocalBackend(data_dir=tmp_path / "data")
    image = registry.runnable.references(registry.host)["job_fail"]
    made = backend.create_container_group(
        ContainerGroupSpec(
            name="nightly",
            cache="none",
            restart_policy="Never",
            containers=[{"name": "job", "image": image, "env": {"EXIT_CODE": "5"}}],
        )
    )
    deadline = time.monotonic() + 20
    while backend.get_container_group(made.id).status.value != "Failed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    yield made
    backend.delete_container_group(made.id)


def test_groups_list_show_and_logs(cli, finished_job) -> None:  # noqa: F811
    [group] = json.loads(cli("--json", "groups", "list").stdout)
    assert (group["id"], group["status"]) == (finished_job.id, "Failed")
    assert group["containers"][0]["exit_code"] == 5
    table = cli("groups", "list").stdout
    assert finished_job.id in table and "job: Terminated exit 5" in table
    shown = cli("groups", "show", finished_job.id).stdout
    assert "status: Failed" in shown and "image preparation" in shown
    assert cli("groups", "logs", finished_job.id).stdout == "job failing\n"
    assert cli("groups", "logs", finished_job.id, "--tail", "8").stdout == "failing\n"
    assert cli("groups", "logs", finished_job.id, "--tail", "0").stdout == ""
    assert table.splitlines()[0].strip() == "1 container group"
    missing_group = cli("groups", "show", "eci-00000000000000000000", code=3)
    assert "not found" in missing_group.stderr


KILLED_CREATOR = """
import os, signal, sys
from pathlib import Path
from eci_imagecache.backends.local import groups
from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.engine.models import ContainerGroupSpec
backend = LocalBackend(data_dir=Path(sys.argv[1]))
original = groups.ContainerGroups._start
def start_then_die(self, record, spec, prepared):
    original(self, record, spec, prepared)
    print(record.id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # running, but never recorded
groups.ContainerGroups._start = start_then_die
backend.create_container_group(ContainerGroupSpec(
    name="unrecorded", cache="none",
    containers=[{"name": "main", "image": sys.argv[2],
                 "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]}]))
"""


def what_runs(group_ids: list[str]) -> list[str]:
    """Processes (with their command lines), mounts in any mount namespace, and crun's state
    that belong to these groups."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            mounts = (proc / "mountinfo").read_text().splitlines()
        except OSError:
            continue
        for group_id in group_ids:
            if group_id in cmdline:
                found.append(f"process {proc.name}: {cmdline}")
            found += [f"{proc.name} sees {m.split()[4]}" for m in mounts if group_id in m]
    found += [
        f"crun {p.name}"
        for p in Path("/run/crun").glob("*")
        if any(p.name.startswith(g) for g in group_ids)
    ]
    return sorted(found)


def store_contents(db_path: Path) -> tuple[str, list[str]]:
    """The database file's hash and every row of every table (read with SQLite, read-only)."""
    digest = hashlib.sha256(db_path.read_bytes()).hexdigest()
    db = sqlite3.connect(db_path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        return digest, list(db.iterdump())
    finally:
        db.close()


def files(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and modification time (but SQLite's own
    ``-wal``/``-shm`` side files, which a reader may create empty)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.name.endswith(("-wal", "-shm")):
            continue
        with contextlib.suppress(FileNotFoundError):
            stat = path.lstat()
            out[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return out


def test_reading_groups_stops_restarts_unmounts_and_writes_nothing(
    cli,  # noqa: F811
    tmp_path: Path,
    registry: Registry,
) -> None:
    """Two groups recovery would act on: one whose supervisor was killed (its container runs
    on, unsupervised), one started by a process killed before it recorded the group (its
    supervisor stopped it; its directory and state wait for recovery). Listing, showing and
    reading logs shows both as they are and changes nothing."""
    if host.unavailable():
        missing(f"containers cannot run here: {host.unavailable()}")
    data = tmp_path / "data"
    image = registry.runnable.references(registry.host)["job_ok"]
    backend = LocalBackend(data_dir=data)
    made = backend.create_container_group(
        ContainerGroupSpec(
            name="unsupervised",
            cache="none",
            containers=[{"name": "main", "image": image, "command": ["sleep", "600"]}],
        )
    )
    shim = backend.ctx.runtime.state.group(made.id).shim_pid
    creator = subprocess.run(
        [sys.executable, "-c", KILLED_CREATOR, str(data), image], capture_output=True, text=True
    )
    assert creator.returncode == -signal.SIGKILL, creator.stderr
    unrecorded = creator.stdout.strip()
    try:
        os.kill(shim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while host.alive(shim):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # The unrecorded group's supervisor saw its starter die and stopped the group.
        while what_runs([unrecorded]):
            assert time.monotonic() < deadline, what_runs([unrecorded])
            time.sleep(0.05)
        assert (data / "groups" / unrecorded / "plan.json").is_file()
        del backend  # ...and no writer is left open on the store
        gc.collect()
        running = what_runs([made.id, unrecorded])
        assert any(f"{made.id}-main" in line for line in running), running
        before = (store_contents(data / "state.db"), files(data), running)

        listed = {g["id"]: g for g in json.loads(cli("--json", "groups", "list").stdout)}
        table = cli("groups", "list").stdout
        shown = cli("--json", "groups", "show", made.id).stdout
        shown_unrecorded = cli("groups", "show", unrecorded).stdout
        cli("groups", "logs", made.id)

        after = (store_contents(data / "state.db"), files(data), what_runs([made.id, unrecorded]))
        assert after == before
        # What the records and the process table say, as they are.
        group = json.loads(shown)
        assert (group["status"], group["status_reason"]) == (
            "Failed",
            f"supervisor process {shim} ended unexpectedly",
        )
        assert group["containers"][0]["state"] == "Running"
        assert group["containers"][0]["reason"].startswith("running unsupervised")
        assert listed[made.id]["status"] == "Failed"
        assert (listed[unrecorded]["name"], listed[unrecorded]["status"]) == (
            "unrecorded",
            "Failed",
        )
        assert listed[unrecorded]["status_reason"].startswith("not recorded: process ")
        assert (
            "recovery (the next pulumi up, or eci-imagecache gc) removes what is left"
            in (listed[unrecorded]["status_reason"])
        )
        assert unrecorded in table and "unsupervised" in table
        assert "recovery" in shown_unrecorded
    finally:
        # A writer now: recovery removes the unrecorded group; the other is deleted.
        writer = LocalBackend(data_dir=data)
        writer.delete_container_group(made.id)
    assert what_runs([made.id, unrecorded]) == []
    assert list((data / "groups").iterdir()) == []


def test_reading_a_store_its_first_writer_is_still_making(cli, tmp_path: Path) -> None:  # noqa: F811
    """The database exists but has no tables yet (a provider's first run is opening it)."""
    (tmp_path / "data").mkdir()
    db = sqlite3.connect(tmp_path / "data" / "state.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    assert json.loads(cli("--json", "groups", "list").stdout) == []
    assert "not found" in cli("groups", "show", "eci-00000000000000000000", code=3).stderr
    assert [p.name for p in (tmp_path / "data").iterdir() if "state.db" not in p.name] == []
