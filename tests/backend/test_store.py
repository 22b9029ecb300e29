"""The SQLite store: schema versions and migrations."""

import sqlite3
from datetime import timedelta

import pytest

from eci_imagecache.backends.local import store as store_module
from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.backends.local.store import Store

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
        version = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        assert version == (str(len(store_module.MIGRATIONS)),)
        assert db.execute("SELECT expires_at FROM caches").fetchone() == (
            "2026-01-04T00:00:00.000000",
        )
    assert backend.list_image_caches() == []  # due, found through the new index, deleted


def test_a_newer_store_is_refused(tmp_path) -> None:
    Store(tmp_path / "state.db")
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
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
