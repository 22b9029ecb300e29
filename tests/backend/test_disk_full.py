"""A full disk or a read-only file system under the store: writes fail in one line and leave the
state as it was, reads keep answering, and once space returns everything works again.

The store lives on a small tmpfs mounted for the test (root is needed to mount it)."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from eci_imagecache.backends.base import BackendError
from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.engine.models import CacheStatus, ImageCacheSpec

from ..conftest import Registry, missing
from ..support.consistency import assert_consistent


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs, unmounted afterwards."""
    mount = tmp_path / "fs"
    mount.mkdir()
    if os.geteuid() != 0:
        missing("mounting a small file system for disk-full tests needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        missing(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(fs: Path, leave: int = 0) -> Path:
    """Fill ``fs`` to the last byte, then free about ``leave`` bytes."""
    filler = fs / "filler"
    with open(filler, "ab", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 65536)
        except OSError as err:
            assert err.errno == errno.ENOSPC
        try:
            while True:
                out.write(b"\0")
        except OSError:
            pass
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "eci_imagecache.cli.main", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def cache_ids(data_dir: Path) -> list[str]:
    listed = cli(data_dir, "--json", "caches", "list")
    return [c["id"] for c in json.loads(listed.stdout)]


def one_line(message: str) -> bool:
    return "\n" not in message.strip() and "Traceback" not in message


@pytest.mark.parametrize("margin_kib", [0, 4, 16, 48, 128, 256, 384, 520])
def test_a_build_as_the_disk_fills_fails_in_one_line_and_state_holds(
    small_fs: Path, registry: Registry, margin_kib: int
) -> None:
    data_dir = small_fs / "data"
    spec = ImageCacheSpec(name="web", images=[registry.ref("demo/web:1.0")])
    backend = LocalBackend(data_dir=data_dir)
    filler = fill(small_fs, leave=margin_kib * 1024)
    try:
        made = backend.create_image_cache(spec, client_token="t")
    except BackendError as err:
        assert one_line(str(err)), str(err)
        assert "space" in str(err) or "full" in str(err), str(err)
    else:
        assert made.status == CacheStatus.READY
    filler.unlink()
    after = LocalBackend(data_dir=data_dir)
    assert_consistent(after)
    again = after.create_image_cache(spec, client_token="t")
    assert again.status == CacheStatus.READY
    assert [c.id for c in after.list_image_caches()] == [again.id]


def test_reads_work_on_a_full_disk_and_writes_say_why_they_cannot(
    small_fs: Path, registry: Registry
) -> None:
    data_dir = small_fs / "data"
    built = cli(data_dir, "caches", "build", "web", registry.ref("demo/web:1.0"))
    assert built.returncode == 0, built.stderr
    [cache_id] = cache_ids(data_dir)
    # Every connection closed and the log checkpointed: opening needs to create files again.
    db = sqlite3.connect(data_dir / "state.db")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    assert not (data_dir / "state.db-wal").exists()
    filler = fill(small_fs)
    listed = cli(data_dir, "caches", "list")
    assert listed.returncode == 0 and cache_id in listed.stdout, listed.stderr
    assert cli(data_dir, "caches", "show", cache_id).returncode == 0
    deleted = cli(data_dir, "caches", "delete", cache_id)
    assert deleted.returncode != 0
    assert deleted.stderr.strip() == (
        f"error: the store at {data_dir} cannot be written: no space left on device"
    )
    filler.unlink()
    assert cli(data_dir, "caches", "delete", cache_id).returncode == 0
    assert cache_id not in cli(data_dir, "caches", "list").stdout


def test_a_read_only_store_answers_reads_and_refuses_writes(
    small_fs: Path, registry: Registry
) -> None:
    data_dir = small_fs / "data"
    # Built by another process: a file open for writing here would keep the remount from working.
    assert cli(data_dir, "caches", "build", "web", registry.ref("demo/web:1.0")).returncode == 0
    cache_id = cache_ids(data_dir)[0]
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    try:
        listed = cli(data_dir, "caches", "list")
        assert listed.returncode == 0 and cache_id in listed.stdout, listed.stderr
        gc = cli(data_dir, "gc")
        assert gc.returncode != 0 and one_line(gc.stderr), gc.stderr
        assert "read-only file system" in gc.stderr
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
    assert [c.id for c in LocalBackend(data_dir=data_dir).list_image_caches()] == [cache_id]
