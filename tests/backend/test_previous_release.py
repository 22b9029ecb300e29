"""A data directory the previous release made keeps working: its databases are adopted as they
are (nothing redone, nothing lost) and end at the current schema.

The oracle is the previous release itself: tests/fixtures/releases/be4f519-*.sql are dumps of
the databases its own code wrote (tests/fixtures/releases/make_dumps.py, run against that
release's package).
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from eci_imagecache.backends.emulator.state import EmulatorState
from eci_imagecache.backends.local.store import Store
from eci_imagecache.runtime.state import RuntimeState

RELEASES = Path(__file__).parents[1] / "fixtures" / "releases"
CURRENT = {"local-store": 8, "runtime": 2, "emulator": 1}


def made_by(release: str, data_dir: Path) -> Path:
    """``data_dir`` as ``release`` left it: its state.db and emulator.db, in WAL mode."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in ("state", "emulator"):
        with sqlite3.connect(data_dir / f"{name}.db") as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript((RELEASES / f"{release}-{name}.sql").read_text())
        db.close()
    return data_dir


def rows(path: Path) -> dict[str, list[tuple]]:
    """Every row of every table but the migration records."""
    with sqlite3.connect(path) as db:
        tables = [
            r[0]
            for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if r[0] != "schema_migrations"
        ]
        found = {t: sorted(db.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables}
    db.close()
    return found


def shape(path: Path) -> dict[str, object]:
    """Each table's columns and each index's columns and uniqueness: the schema as SQLite
    reads it (the text of CREATE statements differs between a table made whole and one made
    by ALTER TABLE)."""
    with sqlite3.connect(path) as db:
        names = db.execute(
            "SELECT type, name, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
        ).fetchall()
        found: dict[str, object] = {}
        for kind, name, table in names:
            if kind == "table":
                found[name] = db.execute(f'PRAGMA table_info("{name}")').fetchall()
            elif kind == "index":
                unique = [r[2] for r in db.execute(f'PRAGMA index_list("{table}")') if r[1] == name]
                columns = [r[2] for r in db.execute(f'PRAGMA index_info("{name}")')]
                found[name] = (table, columns, unique)
    db.close()
    return found


def versions(path: Path) -> dict[str, list[int]]:
    with sqlite3.connect(path) as db:
        found: dict[str, list[int]] = {}
        for owner, version in db.execute(
            "SELECT owner, version FROM schema_migrations ORDER BY owner, version"
        ):
            found.setdefault(owner, []).append(version)
    db.close()
    return found


def open_as_this_release(data_dir: Path) -> tuple[Store, RuntimeState, EmulatorState]:
    return (
        Store(data_dir / "state.db"),
        RuntimeState(data_dir / "state.db"),
        EmulatorState(data_dir / "emulator.db", clock=lambda: 1_000.0),
    )


def test_the_previous_release_s_databases_are_adopted_with_all_their_data(
    tmp_path: Path,
) -> None:
    data_dir = made_by("be4f519", tmp_path / "old")
    before = {name: rows(data_dir / name) for name in ("state.db", "emulator.db")}
    store, runtime, emulator = open_as_this_release(data_dir)
    emulator.close()
    # Nothing redone, nothing lost: every row as the previous release wrote it.
    assert {name: rows(data_dir / name) for name in before} == before
    # Recorded at the versions that release had, which are the current ones.
    assert versions(data_dir / "state.db") == {
        "local-store": list(range(1, CURRENT["local-store"] + 1)),
        "runtime": list(range(1, CURRENT["runtime"] + 1)),
    }
    assert versions(data_dir / "emulator.db") == {"emulator": [1]}
    # The schema is the one this release makes from nothing.
    fresh = tmp_path / "fresh"
    open_as_this_release(fresh)[2].close()
    for name in ("state.db", "emulator.db"):
        assert shape(data_dir / name) == shape(fresh / name)
    # And this release reads what that one wrote.
    with store.read() as db:
        assert [c.id for c in store.list_caches(db)] == ["imc-auto", "imc-building", "imc-manual"]
        assert store.cache_for_token(db, "token-manual").id == "imc-manual"
        assert store.quota(db).max_manual == 7
        assert store.caches_version(db) == 5
        assert store.builds(db) == [("imc-building", "old-host", 4242)]
        assert [e.reason for e in store.removals(db, "imc-gone")] == ["Evicted"]
        group, request = store.group_for_token(db, "token-group")
        assert (group.id, request) == ("eci-web", "digest-of-request")
    assert [e.message for e in store.events("imc-manual")] == ["step 0", "step 1", "step 2"]
    recorded = runtime.group("eci-web")
    assert recorded.address == "127.0.100.2"
    assert [(c.name, c.state, c.ports) for c in recorded.containers] == [
        ("init", "Terminated", []),
        ("nginx", "Running", [80]),
    ]
    emulator = EmulatorState(data_dir / "emulator.db", clock=lambda: 1_000.0)
    assert emulator.extra("cache", "imc-manual")["resource_group_id"] == "rg-1"
    assert not emulator.fresh_nonce("nonce-1", 900)  # seen before the upgrade: still refused
    assert emulator.next_number("address:172.16.0.0/12") == 3  # the count goes on
    emulator.close()


def test_opening_an_adopted_data_dir_again_writes_nothing(tmp_path: Path) -> None:
    data_dir = made_by("be4f519", tmp_path / "old")
    open_as_this_release(data_dir)[2].close()
    before = {name: versions(data_dir / name) for name in ("state.db", "emulator.db")}
    with sqlite3.connect(data_dir / "state.db") as db:
        stamps = db.execute("SELECT * FROM schema_migrations").fetchall()
    open_as_this_release(data_dir)[2].close()
    assert {name: versions(data_dir / name) for name in before} == before
    with sqlite3.connect(data_dir / "state.db") as db:
        assert db.execute("SELECT * FROM schema_migrations").fetchall() == stamps


def test_read_only_views_read_a_data_dir_no_writer_of_this_release_has_opened(
    tmp_path: Path,
) -> None:
    data_dir = made_by("be4f519", tmp_path / "old")
    digest = hashlib.sha256((data_dir / "state.db").read_bytes()).hexdigest()
    store = Store(data_dir / "state.db", read_only=True)
    with store.read() as db:
        assert [c.id for c in store.list_caches(db)] == ["imc-auto", "imc-building", "imc-manual"]
    view = RuntimeState(data_dir / "state.db", read_only=True)
    assert view.group("eci-web").address == "127.0.100.2"
    assert view.group_ids() == ["eci-web"]
    assert hashlib.sha256((data_dir / "state.db").read_bytes()).hexdigest() == digest
    with sqlite3.connect(data_dir / "state.db") as db:
        made = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'schema_migrations'")
        assert made.fetchone() is None
    with (
        pytest.raises(RuntimeError, match="cannot be written: opened read-only"),
        store.transaction(),
    ):
        pass
