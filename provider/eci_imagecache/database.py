"""Every SQLite database of the package is opened here: the local backend's ``state.db`` (the
store's tables and the runtime's), and the emulator's own ``emulator.db``.

A leaf: it imports nothing else of the package, so the runtime layer may use it.

Connections
    WAL (readers go on while a writer commits), ``synchronous=NORMAL`` (a commit survives the
    death of the process that made it; a power loss may take back the last ones), a 30 s busy
    timeout, autocommit mode with explicit transactions: :meth:`Database.write` takes the write
    lock at once (``BEGIN IMMEDIATE``), so read-check-write sequences are atomic across threads
    and processes; :meth:`Database.read` is a deferred transaction, a consistent view that does
    not block writers. A transaction opened inside another on the same thread joins it, but a
    write inside a read raises :class:`WriteInRead` (the read's rollback would undo it): a write
    is committed or raises, never lost. Each thread keeps its own connection, or (``shared``)
    all threads take turns on one.

Nothing can be written (a full disk, a read-only file system, a view opened read-only)
    Reads go on, writes raise :class:`Unwritable` up front, saying why. Reading a WAL database
    needs its ``-shm``/``-wal`` side files; where they cannot be made, the file is read as
    ``immutable``, which sees no later change. Such a connection serves one transaction and is
    closed: the next one tries the normal open again, so a long-lived process picks up writes
    made meanwhile and can write again once space returns. A missing file is never made by a
    view: it raises :class:`CannotOpen` (a view of nothing is its owner's case to handle).

Migrations
    Each owner of tables in a database (the local store, the runtime, the emulator) declares a
    :class:`Schema`: an ordered list of migrations. The versions applied are recorded per owner
    in one table, ``schema_migrations``, each applied once, in the transaction that records it.
    A database made before versions were recorded here is adopted: the owner's ``adopt`` reads
    the version its earlier scheme left (a ``meta`` row, the tables and columns present), which
    is recorded as it is, and only later migrations run.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path

BUSY_TIMEOUT_SECONDS = 30

# One step of a schema: SQL statements separated by ";" (run one by one inside the migration's
# transaction: ``executescript`` would commit first), or a function for work SQL cannot say.
Migration = str | Callable[[sqlite3.Connection], None]


class CannotOpen(sqlite3.OperationalError):
    """The database cannot be opened at all (missing, or unreadable)."""


class Unwritable(sqlite3.OperationalError):
    """A write on a database that cannot be written now; ``cause`` says why."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class WriteInRead(sqlite3.ProgrammingError):
    """A write asked for inside a read on the same thread: the read ends with a rollback, so
    the write would be lost. Take the write first (a write transaction reads too)."""


class NewerSchema(RuntimeError):
    """The database was migrated by a newer release than this one."""

    def __init__(self, path: Path, owner: str, version: int, known: int) -> None:
        super().__init__(
            f"{path}: the {owner} schema is at version {version}, newer than this "
            f"eci-imagecache knows ({known}); upgrade the package"
        )
        self.owner, self.version, self.known = owner, version, known


def _no_earlier_scheme(db: sqlite3.Connection) -> int:
    return 0


@dataclass(frozen=True)
class Schema:
    """The tables one owner keeps in a database. Version ``n`` is ``migrations[n - 1]``.

    ``adopt`` tells the version of a database whose versions this owner has not recorded in
    ``schema_migrations`` yet (made by a release that kept them its own way, or not at all):
    read-only, from what that release left."""

    owner: str
    migrations: Sequence[Migration]
    adopt: Callable[[sqlite3.Connection], int] = _no_earlier_scheme

    @property
    def version(self) -> int:
        return len(self.migrations)


class _Connection(sqlite3.Connection):
    # Why this connection cannot write (None: it can).
    unwritable: str | None = None
    # Closed after one transaction: opened as a fallback, it may not see later changes.
    one_use: bool = False
    # The open transaction is a write (True), a read (False); None: none opened by us.
    writing: bool | None = None


class _Held:
    """The connection in use (None: none open)."""

    db: _Connection | None = None


class _HeldPerThread(_Held, threading.local):
    pass


def has_table(db: sqlite3.Connection, name: str) -> bool:
    return bool(
        db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
    )


def reason(path: Path, err: Exception) -> str:
    """SQLite says "disk I/O error" or "unable to open database file" for several causes:
    name the one that applies to the directory of ``path``."""
    try:
        fs = os.statvfs(path.parent)
    except OSError:
        return str(err)
    if fs.f_flag & os.ST_RDONLY:
        return "read-only file system"
    if fs.f_bavail == 0:
        return "no space left on device"
    return str(err)


def _turn_to_wal(db: sqlite3.Connection) -> None:
    """Switch to WAL, waiting out another connection's write as the busy timeout would.

    Switching reads the file, then takes the write lock; SQLite answers "locked" at once,
    without its busy handler, when another connection holds that lock meanwhile (two
    processes opening a new database together)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    pause = 0.001
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            busy = err.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


class Database:
    def __init__(
        self, path: Path, *, read_only: bool = False, create: bool = True, shared: bool = False
    ) -> None:
        """``read_only``: open for reading only (``mode=ro``): nothing is created, migrated or
        written (SQLite may add its empty side files next to the file when it can).
        ``create=False``: the file must exist already (a missing one raises
        :class:`CannotOpen` instead of being made). ``shared``: one connection for every
        thread, one transaction at a time (for a server whose threads come and go)."""
        self.path = path
        self.read_only = read_only
        self.create = create and not read_only
        self.shared = shared
        self._local: _Held = _Held() if shared else _HeldPerThread()
        self._turn: AbstractContextManager[object] = threading.RLock() if shared else nullcontext()
        if self.create:
            path.parent.mkdir(parents=True, exist_ok=True)

    # connections ---------------------------------------------------------------------------

    def _connect(self, uri: str) -> _Connection:
        """The one call that opens SQLite (autocommit mode: transactions are explicit)."""
        db = sqlite3.connect(
            uri,
            uri=True,
            timeout=BUSY_TIMEOUT_SECONDS,
            isolation_level=None,
            check_same_thread=not self.shared,
            factory=_Connection,
        )
        assert isinstance(db, _Connection)
        return db

    def _uri(self, mode: str) -> str:
        return f"{self.path.resolve().as_uri()}?{mode}"

    def _open(self) -> _Connection:
        if self.read_only:
            try:
                db = self._connect(self._uri("mode=ro"))
            except sqlite3.OperationalError as err:
                return self._fallback(err, "opened read-only")
            try:  # reading a WAL database needs its side files: made now, or not at all
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.OperationalError as err:
                db.close()
                return self._fallback(err, "opened read-only")
            db.unwritable = "opened read-only"
            return db
        try:
            db = self._connect(self._uri("mode=rwc" if self.create else "mode=rw"))
        except sqlite3.OperationalError as err:
            return self._fallback(err)
        try:
            _turn_to_wal(db)
            db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.OperationalError as err:
            db.close()
            return self._fallback(err)
        # Side files left by a reader let SQLite open a database on a read-only file system
        # normally: its writes are refused all the same, up front, until it is writable again.
        with suppress(OSError):
            if os.statvfs(self.path.parent).f_flag & os.ST_RDONLY:
                db.unwritable, db.one_use = "read-only file system", True
        return db

    def _fallback(self, err: sqlite3.OperationalError, cause: str | None = None) -> _Connection:
        """Read the file as it is when the normal open fails because nothing can be written
        (a full disk, a read-only file system): for one transaction, writes refused."""
        if not self.path.is_file():
            raise CannotOpen(reason(self.path, err)) from None
        try:
            db = self._connect(self._uri("immutable=1"))
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:
            raise CannotOpen(reason(self.path, err)) from None
        db.unwritable, db.one_use = cause or reason(self.path, err), True
        return db

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (the shared one with ``shared``), opened on first use."""
        db = self._local.db
        if db is None:
            db = self._open()
            if not db.one_use:
                self._local.db = db
        return db

    @property
    def in_transaction(self) -> bool:
        """Whether this thread is inside a transaction of this database."""
        db = self._local.db
        return db is not None and db.in_transaction

    def close(self) -> None:
        """Close this thread's connection (the shared one with ``shared``)."""
        with self._turn:
            db, self._local.db = self._local.db, None
            if db is not None:
                db.close()

    @contextmanager
    def _held(self) -> Iterator[tuple[_Connection, bool]]:
        """This thread's connection for a transaction, and whether one is open on it already;
        a connection for one use is closed once the outermost transaction ends."""
        with self._turn:
            db = self._local.db
            if db is not None and db.in_transaction:
                yield db, True
                return
            if db is not None and db.writing is not None:  # its end was never recorded
                self._drop(db)
                db = None
            db = self._local.db or self._open()
            self._local.db = db
            try:
                yield db, False
            finally:
                if db.one_use or db.in_transaction:
                    # One use, or a transaction its end failed to close: a later one must
                    # never join it (its writes would be lost), so the connection goes.
                    self._drop(db)

    def _drop(self, db: _Connection) -> None:
        if self._local.db is db:
            self._local.db = None
        with suppress(sqlite3.Error):
            db.close()

    # transactions ------------------------------------------------------------------------

    @contextmanager
    def write(
        self, commit: Callable[[sqlite3.Connection], None] | None = None
    ) -> Iterator[sqlite3.Connection]:
        """A write transaction, taken at once (``BEGIN IMMEDIATE``); committed at the end,
        rolled back whole on an exception. ``commit`` replaces the plain ``COMMIT`` (an owner
        that marks its commit points). Raises :class:`Unwritable` when nothing can be written."""
        with self._held() as (db, joined):
            if joined:
                if not db.writing:
                    raise WriteInRead(
                        f"{self.path}: a write inside a read on the same thread would be "
                        "rolled back with the read"
                    )
                yield db
                return
            if db.unwritable is not None:
                raise Unwritable(db.unwritable)
            db.execute("BEGIN IMMEDIATE")
            db.writing = True
            try:
                yield db
                (commit or _commit)(db)
                if db.in_transaction:
                    raise sqlite3.OperationalError(f"{self.path}: the write was not committed")
            except BaseException:
                if db.in_transaction:
                    with suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise
            finally:
                db.writing = None

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent read that does not block writers (a deferred transaction in WAL)."""
        with self._held() as (db, joined):
            if joined:
                yield db
                return
            db.execute("BEGIN")
            db.writing = False
            try:
                yield db
            finally:
                if db.in_transaction:
                    with suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                db.writing = None

    # migrations --------------------------------------------------------------------------

    def migrate(self, schema: Schema) -> None:
        """Bring ``schema``'s tables to its current version; each migration is applied once,
        in one transaction with its record. Writes only when something is left to do, so a
        database that cannot be written opens when it is current already."""
        with self.read() as db:
            recorded = _recorded(db, schema.owner)
            found = schema.adopt(db) if recorded is None else recorded
        self._not_newer(schema, found)
        if recorded == schema.version:
            return
        try:
            with self.write() as db:
                self._apply(db, schema)
        except sqlite3.OperationalError:
            if found < schema.version:
                raise
            # Current already, only the record of its adoption was left to write (a full
            # disk, a read-only file system): the next writer that can, writes it.

    def _apply(self, db: sqlite3.Connection, schema: Schema) -> None:
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (owner TEXT NOT NULL, "
            "version INTEGER NOT NULL, applied_at REAL NOT NULL, PRIMARY KEY (owner, version))"
        )
        version = _recorded(db, schema.owner)  # again: another process may have migrated
        if version is None:
            version = schema.adopt(db)
            _record(db, schema.owner, range(1, version + 1))
        self._not_newer(schema, version)  # rolls the transaction back
        for number in range(version + 1, schema.version + 1):
            step = schema.migrations[number - 1]
            if callable(step):
                step(db)
            else:
                for statement in filter(str.strip, step.split(";")):
                    db.execute(statement)
            _record(db, schema.owner, [number])

    def _not_newer(self, schema: Schema, version: int) -> None:
        if version > schema.version:
            raise NewerSchema(self.path, schema.owner, version, schema.version)


def schema_version(db: sqlite3.Connection, schema: Schema) -> int:
    """The version of ``schema`` the database has: as recorded, or as its earlier scheme left
    it (read in the caller's transaction: a read-only view, which migrates nothing, asks)."""
    recorded = _recorded(db, schema.owner)
    return schema.adopt(db) if recorded is None else recorded


def _commit(db: sqlite3.Connection) -> None:
    db.execute("COMMIT")


def _recorded(db: sqlite3.Connection, owner: str) -> int | None:
    """The last version recorded for ``owner`` (None: none recorded)."""
    if not has_table(db, "schema_migrations"):
        return None
    row = db.execute(
        "SELECT max(version) FROM schema_migrations WHERE owner = ?", (owner,)
    ).fetchone()
    return None if row[0] is None else int(row[0])


def _record(db: sqlite3.Connection, owner: str, versions: Iterable[int]) -> None:
    db.executemany(
        "INSERT INTO schema_migrations (owner, version, applied_at) VALUES (?, ?, ?)",
        [(owner, number, time.time()) for number in versions],
    )
