"""The one SQLite helper: real files, real processes, real mounts."""

from __future__ import annotations

import ast
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from eci_imagecache import database as database_module
from eci_imagecache.database import (
    CannotOpen,
    Database,
    NewerSchema,
    Schema,
    Unwritable,
    WriteInRead,
    schema_version,
)

from ..conftest import missing


def counted(owner: str, version: int):
    """A migration that leaves a row each time it runs."""

    def step(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS ran (owner TEXT, version INTEGER)")
        db.execute("INSERT INTO ran VALUES (?, ?)", (owner, version))

    return step


def runs(path: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT owner, version FROM ran ORDER BY owner, version").fetchall()


def recorded(path: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(path) as db:
        return db.execute(
            "SELECT owner, version FROM schema_migrations ORDER BY owner, version"
        ).fetchall()


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory bind-mounted read-only over itself (root is needed), writable again after."""
    if os.geteuid() != 0:
        missing("a read-only bind mount needs root")
    folder = tmp_path / "ro"
    folder.mkdir()
    subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def remount(folder: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,bind,{mode}", str(folder)], check=True)


def test_each_migration_is_applied_once_per_owner(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Schema("store", [counted("store", 1), counted("store", 2)])
    runtime = Schema("runtime", [counted("runtime", 1)])
    for _ in range(2):
        database = Database(path)
        database.migrate(store)
        database.migrate(runtime)
        database.close()
    assert runs(path) == [("runtime", 1), ("store", 1), ("store", 2)]
    # A release that adds a migration to one owner runs only that one.
    Database(path).migrate(Schema("runtime", [counted("runtime", 1), counted("runtime", 2)]))
    assert runs(path) == [("runtime", 1), ("runtime", 2), ("store", 1), ("store", 2)]
    assert recorded(path) == runs(path)


def test_a_database_made_before_versions_were_recorded_is_adopted_at_its_version(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:  # the earlier scheme: the version in a row of its own
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        db.execute("INSERT INTO meta VALUES ('schema_version', '2')")

    def earlier(db: sqlite3.Connection) -> int:
        return int(db.execute("SELECT value FROM meta").fetchone()[0])

    schema = Schema("store", [counted("store", n) for n in (1, 2, 3)], adopt=earlier)
    database = Database(path)
    with database.read() as db:
        assert schema_version(db, schema) == 2
    database.migrate(schema)
    assert runs(path) == [("store", 3)]  # 1 and 2 were there: adopted, not run again
    assert recorded(path) == [("store", 1), ("store", 2), ("store", 3)]


def test_a_database_migrated_by_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    Database(path).migrate(Schema("store", [counted("store", 1), counted("store", 2)]))
    with pytest.raises(NewerSchema, match="store schema is at version 2, newer than"):
        Database(path).migrate(Schema("store", [counted("store", 1)]))


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from eci_imagecache.database import Database, Schema

    def step(db):
        db.execute("CREATE TABLE counter (n INTEGER NOT NULL)")
        db.execute("INSERT INTO counter VALUES (0)")
        db.execute("CREATE TABLE IF NOT EXISTS ran (owner TEXT, version INTEGER)")
        db.execute("INSERT INTO ran VALUES ('counter', 1)")

    sys.stdin.readline()  # every writer starts at once
    database = Database(Path(sys.argv[1]))
    database.migrate(Schema("counter", [step]))
    for _ in range(int(sys.argv[2])):
        with database.write() as db:  # read, then write what was read plus one
            (n,) = db.execute("SELECT n FROM counter").fetchone()
            db.execute("UPDATE counter SET n = ?", (n + 1,))
    """
)


def test_two_processes_migrating_and_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), "300"],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for writer in writers:
        assert writer.stdin is not None
        writer.stdin.write("go\n")
        writer.stdin.flush()
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    assert runs(path) == [("counter", 1)]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT n FROM counter").fetchone() == (600,)


def test_switching_to_wal_waits_for_another_process_s_write_instead_of_giving_up(
    tmp_path: Path,
) -> None:
    # Turning a new file to WAL reads it, then needs the write lock: SQLite answers "locked"
    # at once, without waiting, when another connection holds that lock meanwhile.
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE counter (n INTEGER NOT NULL)")
        db.execute("INSERT INTO counter VALUES (0)")
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE counter SET n = 1")
    release = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    release.start()
    try:
        with Database(path).write() as db:
            db.execute("UPDATE counter SET n = n + 1")
    finally:
        release.join()
        other.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT n FROM counter").fetchone() == (2,)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_threads_take_turns_on_a_shared_connection(tmp_path: Path) -> None:
    database = Database(tmp_path / "emulator.db", shared=True)
    with database.write() as db:
        db.execute("CREATE TABLE counter (n INTEGER NOT NULL)")
        db.execute("INSERT INTO counter VALUES (0)")

    def add() -> None:
        for _ in range(100):
            with database.write() as db:
                (n,) = db.execute("SELECT n FROM counter").fetchone()
                db.execute("UPDATE counter SET n = ?", (n + 1,))

    threads = [threading.Thread(target=add) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with database.read() as db:
        assert db.execute("SELECT n FROM counter").fetchone() == (400,)
    database.close()


def test_a_failed_transaction_leaves_nothing_even_when_an_inner_one_joined_it(
    tmp_path: Path,
) -> None:
    database = Database(tmp_path / "state.db")
    with database.write() as db:
        db.execute("CREATE TABLE t (n INTEGER)")
    with pytest.raises(ZeroDivisionError), database.write() as db:
        db.execute("INSERT INTO t VALUES (1)")
        with database.write() as inner:
            inner.execute("INSERT INTO t VALUES (2)")
        raise ZeroDivisionError
    with database.read() as db:
        assert db.execute("SELECT count(*) FROM t").fetchone() == (0,)


def committed(path: Path) -> int:
    """Rows of ``t`` another connection sees: what was committed."""
    other = sqlite3.connect(path)
    try:
        return other.execute("SELECT count(*) FROM t").fetchone()[0]
    finally:
        other.close()


def test_a_write_inside_a_read_raises_instead_of_being_rolled_back_with_it(
    tmp_path: Path,
) -> None:
    database = Database(tmp_path / "state.db")
    with database.write() as db:
        db.execute("CREATE TABLE t (n INTEGER)")
    with pytest.raises(WriteInRead), database.read(), database.write() as db:
        db.execute("INSERT INTO t VALUES (1)")
    assert committed(tmp_path / "state.db") == 0
    with database.write() as db:  # the connection is usable again, and commits
        db.execute("INSERT INTO t VALUES (2)")
    assert committed(tmp_path / "state.db") == 1


def test_a_write_after_a_read_left_open_is_never_silently_lost(tmp_path: Path) -> None:
    """A read in a generator abandoned before its end keeps its transaction open: a later
    write on the thread either commits or raises, never joins that read to vanish."""
    database = Database(tmp_path / "state.db")
    with database.write() as db:
        db.execute("CREATE TABLE t (n INTEGER)")

    def rows() -> Iterator[int]:
        with database.read() as db:
            yield from (n for (n,) in db.execute("SELECT 1 UNION SELECT 2"))

    abandoned = rows()
    next(abandoned)  # left unexhausted: its read stays open
    try:
        with database.write() as db:
            db.execute("INSERT INTO t VALUES (1)")
    except WriteInRead:
        assert committed(tmp_path / "state.db") == 0
    else:
        assert committed(tmp_path / "state.db") == 1
    abandoned.close()
    with database.write() as db:
        db.execute("INSERT INTO t VALUES (2)")
    assert committed(tmp_path / "state.db") >= 1
    database.close()


def test_a_view_of_a_missing_database_makes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "state.db"
    view = Database(path, read_only=True)
    with pytest.raises(CannotOpen), view.read():
        pass
    assert not path.parent.exists()
    with pytest.raises(CannotOpen):  # nor does a writer told the file must be there
        Database(path, create=False).connection()
    assert not path.parent.exists()


def test_a_view_reads_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    writer = Database(path)
    with writer.write() as db:
        db.execute("CREATE TABLE t (n INTEGER)")
        db.execute("INSERT INTO t VALUES (1)")
    view = Database(path, read_only=True)
    with view.read() as db:
        assert db.execute("SELECT n FROM t").fetchall() == [(1,)]
    with pytest.raises(Unwritable, match="opened read-only"), view.write():
        pass
    with writer.write() as db:  # a writer's later commit is seen by the same view
        db.execute("INSERT INTO t VALUES (2)")
    with view.read() as db:
        assert db.execute("SELECT n FROM t ORDER BY n").fetchall() == [(1,), (2,)]


def test_in_a_read_only_directory_reads_go_on_writes_say_why_and_come_back(
    read_only_dir: Path,
) -> None:
    path = read_only_dir / "state.db"
    schema = Schema("store", ["CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1)"])
    made = Database(path)
    made.migrate(schema)
    made.close()  # the last connection folds the log in and removes the side files
    assert not Path(f"{path}-wal").exists()
    remount(read_only_dir, "ro")
    view = Database(path, read_only=True)
    writer = Database(path)  # one long-lived process
    with view.read() as db:  # no side files can be made: the file is read as it is
        assert db.execute("SELECT n FROM t").fetchall() == [(1,)]
    writer.migrate(schema)  # current already: opens without writing
    with writer.read() as db:
        assert db.execute("SELECT n FROM t").fetchall() == [(1,)]
    with pytest.raises(Unwritable, match="read-only file system"), writer.write():
        pass
    with pytest.raises(Unwritable, match="opened read-only"), view.write():
        pass
    remount(read_only_dir, "rw")
    # The fallback served one transaction: the same process writes again, and its view sees it.
    with writer.write() as db:
        db.execute("INSERT INTO t VALUES (2)")
    with view.read() as db:
        assert db.execute("SELECT n FROM t ORDER BY n").fetchall() == [(1,), (2,)]


def test_sqlite_is_opened_in_one_module_that_imports_nothing_else_of_ours() -> None:
    package = Path(database_module.__file__).parent
    opening = sorted(
        str(source.relative_to(package))
        for source in package.rglob("*.py")
        if "sqlite3.connect(" in source.read_text()
    )
    assert opening == ["database.py"]
    tree = ast.parse(Path(database_module.__file__).read_text())
    ours = [
        node
        for node in ast.walk(tree)
        if (
            isinstance(node, ast.ImportFrom)
            and (node.level > 0 or (node.module or "").startswith("eci_imagecache"))
        )
        or (
            isinstance(node, ast.Import)
            and any(alias.name.startswith("eci_imagecache") for alias in node.names)
        )
    ]
    assert ours == []
