"""The SQLite store: schema versions and migrations."""

import os
import sqlite3
import subprocess
from datetime import timedelta

import pytest

from eci_imagecache.backends.base import StoreError
from eci_imagecache.backends.local import store as store_module
from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.backends.local.store import Store

from ..conftest import missing
from ..unit.helpers import T0, record


def test_a_version_2_store_migrates_and_backfills_expiry(tmp_path, monkeypatch) -> None:
    path = tmp_path / "state.db"
    monkeypatch.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:2])
    old = Store(path)
    expiring = record("imc-old", ["nginx"], retention_days=3)
    with old.transaction() as db:  # written the way version 2 wrote rows: no expiry column
        db.execute(
            "INSERT INTO caches (id, name, kind, region, record) VALUES (?, ?, ?, ?, ?)",
            (expiring.id, expiring.name, "manual", "local", expiring.model_dump_json()),
        )
    monkeypatch.undo()
    backend = LocalBackend(data_dir=tmp_path, clock=lambda: T0 + timedelta(days=3))
    with sqlite3.connect(path) as db:
        versions = db.execute(
            "SELECT version FROM schema_migrations WHERE owner = 'local-store' ORDER BY version"
        ).fetchall()
        assert versions == [(n,) for n in range(1, len(store_module.MIGRATIONS) + 1)]
        assert db.execute("SELECT expires_at FROM caches").fetchone() == (
            "2026-01-04T00:00:00.000000",
        )
    assert backend.list_image_caches() == []  # due, found through the new index, deleted


def test_a_newer_store_is_refused(tmp_path) -> None:
    Store(tmp_path / "state.db")
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute(
            "INSERT INTO schema_migrations (owner, version, applied_at) "
            "VALUES ('local-store', 99, 0)"
        )
    with pytest.raises(RuntimeError, match="schema version 99 is newer"):
        Store(tmp_path / "state.db")


def test_a_newer_store_of_the_release_before_migrations_were_recorded_is_refused(
    tmp_path,
) -> None:
    """That release kept its version in meta: a store it left at a version unknown here."""
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '99')")
    with pytest.raises(RuntimeError, match="schema version 99 is newer"):
        Store(tmp_path / "state.db")


def test_each_cache_keeps_its_50_most_recent_events(tmp_path) -> None:
    from eci_imagecache.engine.models import CacheEvent

    store = Store(tmp_path / "state.db")
    with store.transaction() as db:
        for i in range(60):
            store.add_event(
                db, "imc-a", CacheEvent(at=T0, kind="Normal", reason="Step", message=str(i))
            )
        store.add_event(db, "imc-b", CacheEvent(at=T0, kind="Normal", reason="Step", message="b"))
    events = store.events("imc-a")
    assert [e.message for e in events] == [str(i) for i in range(10, 60)]
    assert [e.message for e in store.events("imc-b")] == ["b"]


def test_a_store_that_could_not_be_written_writes_again_once_it_can(tmp_path) -> None:
    """A long-lived process (the provider) whose store sat on a read-only file system for a
    while: its writes are refused meanwhile, then work again without a restart."""
    if os.geteuid() != 0:
        missing("a read-only bind mount needs root")
    folder = tmp_path / "data"
    folder.mkdir()
    Store(folder / "state.db")  # made, and every connection closed when it goes
    subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        store = Store(folder / "state.db")
        refused = pytest.raises(StoreError, match="cannot be written: read-only file system")
        with refused, store.transaction() as db:
            store.put_cache(db, record("imc-a", ["nginx"]))
        subprocess.run(["mount", "-o", "remount,bind,rw", str(folder)], check=True)
        with store.transaction() as db:
            store.put_cache(db, record("imc-a", ["nginx"]))
        with store.read() as db:
            assert [c.id for c in store.list_caches(db)] == ["imc-a"]
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
