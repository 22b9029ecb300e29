"""`eci-imagecache gc --dry-run` changes nothing, also where the recovery a writer does as it
opens would act (a build whose process was killed, its temporary files, a group whose creator
died before recording it, a group whose supervisor died), and says what `gc` then deletes.
The oracles are the files, the database read with SQLite and the process table."""

import gc
import json
import os
import signal
import sqlite3
import stat
import subprocess
from datetime import datetime
from pathlib import Path

from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.engine.models import ContainerGroupSpec, ImageCacheSpec
from eci_imagecache.runtime import host
from tests.support.fault_proxy import Fault, FaultProxy

from ..conftest import Registry, missing
from .test_cli import cli  # noqa: F401 - the fixture
from .test_groups_cli import files, store_contents, what_runs
from .test_reads_change_nothing import (
    THREE_DAYS_AGO,
    child,
    claims,
    orphan_groups,
    wait_for,
)


def cache_ids(data: Path) -> set[str]:
    db = sqlite3.connect((data / "state.db").resolve().as_uri() + "?mode=ro", uri=True)
    try:
        return {row[0] for row in db.execute("SELECT id FROM caches")}
    finally:
        db.close()


def open_here(path: Path) -> list[str]:
    """Descriptors of this process open on ``path`` or its SQLite side files."""
    names = {str(path.resolve()) + suffix for suffix in ("", "-wal", "-shm")}
    fds = Path("/proc/self/fd")
    return [fd.name for fd in fds.iterdir() if os.path.realpath(fd) in names]


def temp_entries(data: Path) -> list[str]:
    """What writers leave in the blob and layer stores' temporary directories."""
    return sorted(
        str(p.relative_to(data)) for d in ("blobs/tmp", "layers/tmp") for p in (data / d).iterdir()
    )


def stored(data: Path) -> tuple[set[str], set[str], set[str]]:
    """Blob files, unpacked layer directories and group directories present."""
    blobs = {p.name for p in (data / "blobs" / "sha256").glob("*/*")}
    layers = {p.name for p in (data / "layers" / "sha256").iterdir()}
    groups = {p.name for p in (data / "groups").iterdir()}
    return blobs, layers, groups


def layer_bytes(data: Path) -> dict[str, int]:
    """Each unpacked layer's bytes: its regular files, each inode once."""
    sizes = {}
    for layer in (data / "layers" / "sha256").iterdir():
        seen = {}
        for directory, _, names in os.walk(layer):
            for name in names:
                info = os.lstat(os.path.join(directory, name))
                if stat.S_ISREG(info.st_mode):
                    seen[info.st_ino] = info.st_size
        sizes[layer.name] = sum(seen.values())
    return sizes


def start_killed_build(data: Path, proxy: FaultProxy) -> subprocess.Popen:
    """A build, slow to fetch, killed once it has claimed its cache and written part of a
    blob or layer in a temporary file."""
    builder = child(data, "build", f"{proxy.host}/demo/tools:1.0", stderr=subprocess.DEVNULL)
    mine = f"{builder.pid}-"
    wait_for(lambda: claims(data), "the build never claimed its cache")
    wait_for(
        lambda: any(Path(e).name.startswith(mine) for e in temp_entries(data)),
        "the build wrote no temporary file",
    )
    os.kill(builder.pid, signal.SIGKILL)
    builder.wait()
    return builder


def test_gc_dry_run_changes_nothing_and_says_what_gc_then_deletes(
    cli,  # noqa: F811
    tmp_path: Path,
    registry: Registry,
) -> None:
    data = tmp_path / "data"
    old = datetime.fromisoformat(THREE_DAYS_AGO)
    writer = LocalBackend(data_dir=data, clock=lambda: old)
    # Retention of 2 days, made 3 days ago: due for deletion, not yet deleted.
    expired = writer.create_image_cache(
        ImageCacheSpec(name="old", images=[registry.ref("demo/web:1.0")], retention_days=2)
    )
    kept = writer.create_image_cache(
        ImageCacheSpec(name="kept", images=[registry.ref("demo/worker:1.0")])
    )
    # Deleted by a process that died before it removed what the cache held: its blobs and
    # unpacked layers stay until gc. (Not the image of the build killed below, which then
    # unpacks its own layers, in temporary directories.)
    dropped = writer.create_image_cache(
        ImageCacheSpec(name="dropped", images=[registry.ref("demo/web:1.1")])
    )
    with writer.store.transaction() as db:
        writer.ctx.delete_cache(db, dropped.id, release=False)
    # No connection of this process may outlive the writer: reading the database's bytes
    # below (store_contents) closes a descriptor of it, which drops every POSIX lock this
    # process holds on it; a CLI then deletes the log and its index as the last to close,
    # and the next read here, through SQLite's state for that file, sees an old snapshot.
    del writer, db
    gc.collect()
    assert not open_here(data / "state.db")
    proxy = FaultProxy(registry.server.url, [Fault(r"GET /v2/.*/blobs/", slow_body=0.2)])
    try:
        builder = start_killed_build(data, proxy)
    finally:
        proxy.close()
    [interrupted] = cache_ids(data) - {expired.id, kept.id}
    temps = temp_entries(data)
    assert any(Path(e).name.startswith(f"{builder.pid}-") for e in temps), temps
    blobs, layers, _ = stored(data)
    sizes = layer_bytes(data)
    before = (store_contents(data / "state.db"), files(data))

    dry = json.loads(cli("--json", "gc", "--dry-run", "--grace-minutes", "0").stdout)
    said = cli("gc", "--dry-run", "--grace-minutes", "0").stdout

    assert (store_contents(data / "state.db"), files(data)) == before
    assert claims(data) and temp_entries(data) == temps

    done = cli("gc", "--grace-minutes", "0").stdout
    # The printed plan is what gc did, line for line.
    assert said.replace("would delete", "deleted") == done
    reason = f"build interrupted: process {builder.pid} ended before it finished"
    assert dry["dry_run"] is True
    assert dry["expired"] == [f"{expired.id} (retention of 2 days elapsed)"]
    assert dry["failed"] == [f"{interrupted} ({reason})"]
    # What is gone, by the store's own files and database.
    assert cache_ids(data) == {kept.id}
    assert not claims(data)
    assert temp_entries(data) == []  # recovery removed the dead build's files
    blobs_after, layers_after, _ = stored(data)
    assert blobs_after <= blobs and layers_after <= layers
    assert len(blobs - blobs_after) == dry["blobs_removed"] > 0
    assert len(layers - layers_after) == dry["layers_removed"] > 0
    assert dry["files_removed"] == 0
    freed = sum(
        size
        for path, (size, _) in before[1].items()
        if path.startswith("blobs/sha256/") and Path(path).name in blobs - blobs_after
    )
    freed += sum(sizes[name] for name in layers - layers_after)
    assert dry["bytes_freed"] == freed
    # Nothing left for another gc.
    again = json.loads(cli("--json", "gc", "--dry-run", "--grace-minutes", "0").stdout)
    assert (again["expired"], again["failed"], again["blobs_removed"]) == ([], [], 0)
    assert (again["layers_removed"], again["bytes_freed"]) == (0, 0)


def test_gc_dry_run_leaves_groups_to_recovery_and_counts_what_their_removal_frees(
    cli,  # noqa: F811
    tmp_path: Path,
    registry: Registry,
) -> None:
    """A group whose supervisor was killed (its container runs on) and one whose creator was
    killed before recording it: a writer's recovery records the first failed and removes the
    second, whose image's own layer then goes with gc. The dry run does neither, and counts
    that layer."""
    if host.unavailable():
        missing(f"containers cannot run here: {host.unavailable()}")
    data = tmp_path / "data"
    images = registry.runnable.references(registry.host)
    writer = LocalBackend(data_dir=data)
    group = writer.create_container_group(
        ContainerGroupSpec(
            name="unsupervised",
            cache="none",
            containers=[{"name": "main", "image": images["job_ok"], "command": ["sleep", "600"]}],
        )
    )
    shim = writer.ctx.runtime.state.group(group.id).shim_pid
    del writer
    gc.collect()
    unrecorded = None
    try:
        unrecorded = orphan_groups(data, images["httpd"], shim)
        running = what_runs([group.id, unrecorded])
        assert any(f"{group.id}-main" in line for line in running), running
        assert unrecorded in stored(data)[2]
        _, layers, _ = stored(data)
        before = (store_contents(data / "state.db"), files(data), running)

        dry = json.loads(cli("--json", "gc", "--dry-run", "--grace-minutes", "0").stdout)
        said = cli("gc", "--dry-run", "--grace-minutes", "0").stdout
        after = (store_contents(data / "state.db"), files(data), what_runs([group.id, unrecorded]))
        assert after == before

        done = cli("gc", "--grace-minutes", "0").stdout
        assert said.replace("would delete", "deleted") == done
        _, layers_after, groups_after = stored(data)
        assert unrecorded not in groups_after and group.id in groups_after
        # The httpd image's own layer: only the unrecorded group ran on it.
        assert len(layers - layers_after) == dry["layers_removed"] == 1
        assert (dry["expired"], dry["failed"], dry["files_removed"]) == ([], [], 0)
        # The recorded group's container runs on (recovery records it, stops nothing).
        assert any(f"{group.id}-main" in line for line in what_runs([group.id]))
    finally:
        LocalBackend(data_dir=data).delete_container_group(group.id)
    assert what_runs([group.id, *([unrecorded] if unrecorded else [])]) == []
