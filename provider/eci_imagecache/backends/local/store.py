"""SQLite state of the local backend.

One connection per thread (Pulumi runs provider hooks in a thread pool) and ``BEGIN IMMEDIATE``
transactions, so concurrent hooks and concurrent processes serialize their writes; WAL lets
readers go on meanwhile (opened, and migrated forward on open, by :mod:`eci_imagecache.database`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ...database import (
    CannotOpen,
    Database,
    Migration,
    NewerSchema,
    Schema,
    Unwritable,
    has_table,
    reason,
)
from ...engine.lifecycle import expires_at
from ...engine.models import (
    MAX_EVENTS,
    CacheEvent,
    CacheKind,
    CacheRecord,
    ContainerGroupRecord,
    Quota,
)
from ...engine.refs import ImageRef
from ..base import StoreError


def _expiry_column(db: sqlite3.Connection) -> None:
    """3: the expiry as a column, so expiry sweeps read only the caches that are due."""
    db.execute("ALTER TABLE caches ADD COLUMN expires_at TEXT")
    db.execute("CREATE INDEX caches_expiry ON caches(expires_at)")
    for cache_id, record in db.execute("SELECT id, record FROM caches").fetchall():
        expiry = _expiry_key(CacheRecord.model_validate_json(record))
        db.execute("UPDATE caches SET expires_at = ? WHERE id = ?", (expiry, cache_id))


def _expiry_key(record: CacheRecord) -> str | None:
    return _time_key(expires_at(record))


def _match_key(
    record: CacheRecord,
) -> tuple[str, bool, int, datetime, list[ImageRef], str]:
    """What the matching index keeps of a cache: a record that changes none of it needs no
    new index entry."""
    return (
        record.region,
        record.usable,
        record.size_gib,
        record.created_at,
        record.images,
        record.name,
    )


def _time_key(value: datetime | None) -> str | None:
    """UTC, fixed width: compares as text in the same order as in time."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") if value else None


# The store's schema, version n is MIGRATIONS[n - 1] (recorded in schema_migrations as owner
# "local-store"; releases before that kept the version in meta, read by _previous_version).
MIGRATIONS: list[Migration] = [
    # 1: settings and counters (meta); caches, their events, the layers each holds
    """
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE caches (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        region TEXT NOT NULL,
        record TEXT NOT NULL
    );
    CREATE INDEX caches_name ON caches(name);
    CREATE TABLE cache_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        cache_id TEXT NOT NULL,
        event TEXT NOT NULL
    );
    CREATE INDEX cache_events_cache ON cache_events(cache_id, seq);
    CREATE TABLE cache_layers (
        cache_id TEXT NOT NULL,
        digest TEXT NOT NULL,
        size INTEGER NOT NULL,
        PRIMARY KEY (cache_id, digest)
    );
    CREATE INDEX cache_layers_digest ON cache_layers(digest);
    """,
    # 2: container groups; the process building each cache (to find builds that died)
    """
    CREATE TABLE container_groups (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        record TEXT NOT NULL
    );
    CREATE TABLE builds (
        cache_id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL
    );
    """,
    _expiry_column,
    # 4: the token of the create that made a cache: a create with the same token returns it
    """
    ALTER TABLE caches ADD COLUMN client_token TEXT;
    CREATE UNIQUE INDEX caches_client_token ON caches(client_token)
        WHERE client_token IS NOT NULL
    """,
    # 5: why caches went that nobody deleted (evicted, expired), kept after the cache is gone
    """
    CREATE TABLE removals (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        cache_id TEXT NOT NULL,
        event TEXT NOT NULL
    );
    CREATE INDEX removals_cache ON removals(cache_id)
    """,
    # 6: the caches_version of each cache's last change matching sees, and of each delete: a
    # reader holding a match index at some version reads only what changed since
    """
    ALTER TABLE caches ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX caches_version ON caches(version);
    CREATE TABLE deleted_caches (id TEXT PRIMARY KEY, version INTEGER NOT NULL);
    CREATE INDEX deleted_caches_version ON deleted_caches(version)
    """,
    # 7: the token of the create that made a container group, and a digest of what it asked
    # for: a create with the same token and request returns the group
    """
    ALTER TABLE container_groups ADD COLUMN client_token TEXT;
    ALTER TABLE container_groups ADD COLUMN request TEXT;
    CREATE UNIQUE INDEX container_groups_client_token ON container_groups(client_token)
        WHERE client_token IS NOT NULL
    """,
    # 8: the blobs a build in progress will hold (claimed with the build, gone with it): a
    # delete or gc meanwhile keeps them, as it keeps what a cache's record holds
    """
    CREATE TABLE build_layers (
        cache_id TEXT NOT NULL,
        digest TEXT NOT NULL,
        PRIMARY KEY (cache_id, digest)
    );
    CREATE INDEX build_layers_digest ON build_layers(digest)
    """,
]

MAX_REMOVALS = 1000  # removal events kept, most recent first


def _previous_version(db: sqlite3.Connection) -> int:
    """A store made before versions were recorded in ``schema_migrations`` kept its version
    in ``meta`` (missing: nothing made yet)."""
    if not has_table(db, "meta"):
        return 0
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def schema() -> Schema:
    return Schema("local-store", tuple(MIGRATIONS), adopt=_previous_version)


class Store:
    def __init__(self, path: Path, read_only: bool = False) -> None:
        """``read_only``: open an existing store for reading only (``mode=ro``): nothing is
        created, migrated or written (SQLite may add its empty ``-wal``/``-shm`` files next to
        the database), and a write transaction raises :class:`StoreError`."""
        self.path = path
        self.read_only = read_only
        self._local = threading.local()
        if read_only and not path.is_file():
            raise StoreError(f"no store at {path.parent}")
        self.db = Database(path, read_only=read_only)
        if read_only:
            return
        try:
            self.db.migrate(schema())  # writes only when behind: a full disk still opens it
        except NewerSchema as err:
            raise StoreError(
                f"the store at schema version {err.version} is newer than this eci-imagecache "
                f"(knows {err.known}); upgrade the package"
            ) from None
        except sqlite3.OperationalError as err:
            raise self._error(err, "written") from None

    def _connect(self) -> sqlite3.Connection:
        return self.db.connection()

    def _error(self, err: sqlite3.OperationalError, doing: str) -> StoreError:
        if isinstance(err, CannotOpen):
            doing, why = "opened", str(err)
        else:
            why = err.cause if isinstance(err, Unwritable) else reason(self.path, err)
        return StoreError(f"the store at {self.path.parent} cannot be {doing}: {why}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: taken at once, so read-check-write sequences are atomic.

        A transaction opened inside another on the same thread joins the outer one. Work
        registered with :meth:`after_commit` (file removals) runs only once the commit is done.
        A store that cannot be written (disk full, read-only) raises :class:`StoreError` and
        keeps its state: the transaction is rolled back whole.
        """
        if self.db.in_transaction:
            with self.db.write() as db:
                yield db
            return
        self._local.after = []
        try:
            with self.db.write(commit=self._commit) as db:
                yield db
        except BaseException as err:
            self._local.after = []
            if isinstance(err, sqlite3.OperationalError):
                raise self._error(err, "written") from None
            raise
        after, self._local.after = self._local.after, []
        for action in after:
            action()

    @staticmethod
    def _commit(db: sqlite3.Connection) -> None:
        """The commit point of every write transaction (crash tests stop the process here)."""
        db.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent read that does not block writers (a deferred transaction in WAL)."""
        if self.db.in_transaction:
            with self.db.read() as db:
                yield db
            return
        try:
            with self.db.read() as db:
                yield db
        except sqlite3.OperationalError as err:
            raise self._error(err, "read") from None

    def after_commit(self, action: Callable[[], object]) -> None:
        self._local.after.append(action)

    @staticmethod
    def quota(db: sqlite3.Connection) -> Quota:
        row = db.execute("SELECT value FROM meta WHERE key = 'quota'").fetchone()
        return Quota.model_validate_json(row[0]) if row else Quota()

    @staticmethod
    def has_table(db: sqlite3.Connection, name: str) -> bool:
        """False for a store its first writer is still making (no tables for a moment)."""
        return has_table(db, name)

    # caches -----------------------------------------------------------------------------

    @staticmethod
    def caches_version(db: sqlite3.Connection) -> int:
        """Bumped by every change matching can see: readers cache the match index on it."""
        row = db.execute("SELECT value FROM meta WHERE key = 'caches_version'").fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    def _bump(db: sqlite3.Connection) -> int:
        """The next caches_version, which the change being made is stamped with."""
        row = db.execute(
            "INSERT INTO meta (key, value) VALUES ('caches_version', '1') ON CONFLICT(key) "
            "DO UPDATE SET value = CAST(value AS INTEGER) + 1 RETURNING value"
        ).fetchone()
        return int(row[0])

    @staticmethod
    def cache_changes_since(
        db: sqlite3.Connection, version: int
    ) -> tuple[list[CacheRecord], list[str]]:
        """Caches changed (in what matching sees) and ids deleted after ``version``: what a
        match index built at ``version`` needs to catch up, without reading every cache."""
        rows = db.execute("SELECT record FROM caches WHERE version > ?", (version,)).fetchall()
        deleted = db.execute("SELECT id FROM deleted_caches WHERE version > ?", (version,))
        return (
            [CacheRecord.model_validate_json(r[0]) for r in rows],
            [r[0] for r in deleted.fetchall()],
        )

    @classmethod
    def put_cache(
        cls, db: sqlite3.Connection, record: CacheRecord, client_token: str | None = None
    ) -> None:
        """Insert or update; a cache keeps the client token it was created with."""
        row = db.execute("SELECT record, version FROM caches WHERE id = ?", (record.id,)).fetchone()
        if row is None or _match_key(CacheRecord.model_validate_json(row[0])) != _match_key(record):
            # Only what matching reads invalidates the index: not use or progress.
            version = cls._bump(db)
        else:
            version = row[1]
        db.execute(
            "INSERT INTO caches (id, name, kind, region, record, expires_at, client_token, "
            "version) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
            "name = excluded.name, kind = excluded.kind, region = excluded.region, "
            "record = excluded.record, expires_at = excluded.expires_at, "
            "client_token = coalesce(excluded.client_token, caches.client_token), "
            "version = excluded.version",
            (
                record.id,
                record.name,
                record.kind.value,
                record.region,
                record.model_dump_json(),
                _expiry_key(record),
                client_token,
                version,
            ),
        )

    @staticmethod
    def cache_for_token(db: sqlite3.Connection, client_token: str) -> CacheRecord | None:
        row = db.execute(
            "SELECT record FROM caches WHERE client_token = ?", (client_token,)
        ).fetchone()
        return CacheRecord.model_validate_json(row[0]) if row else None

    @staticmethod
    def get_cache(db: sqlite3.Connection, cache_id: str) -> CacheRecord | None:
        row = db.execute("SELECT record FROM caches WHERE id = ?", (cache_id,)).fetchone()
        return CacheRecord.model_validate_json(row[0]) if row else None

    @staticmethod
    def list_caches(db: sqlite3.Connection) -> list[CacheRecord]:
        rows = db.execute("SELECT record FROM caches ORDER BY id").fetchall()
        return [CacheRecord.model_validate_json(r[0]) for r in rows]

    @staticmethod
    def due_caches(db: sqlite3.Connection, now: datetime) -> list[CacheRecord]:
        """Caches whose expiry is at or before ``now`` (through the expiry index)."""
        # Sorted here, not by SQL: ORDER BY id would walk the primary key over every cache.
        rows = db.execute(
            "SELECT record FROM caches WHERE expires_at <= ?", (_time_key(now),)
        ).fetchall()
        return sorted((CacheRecord.model_validate_json(r[0]) for r in rows), key=lambda c: c.id)

    @staticmethod
    def caches_named(db: sqlite3.Connection, name: str) -> list[CacheRecord]:
        rows = db.execute("SELECT record FROM caches WHERE name = ? ORDER BY id", (name,))
        return [CacheRecord.model_validate_json(r[0]) for r in rows.fetchall()]

    @staticmethod
    def count_caches(db: sqlite3.Connection, kind: CacheKind) -> int:
        row = db.execute("SELECT count(*) FROM caches WHERE kind = ?", (kind.value,)).fetchone()
        count: int = row[0]
        return count

    @staticmethod
    def caches_of_kind(db: sqlite3.Connection, kind: CacheKind) -> list[CacheRecord]:
        rows = db.execute("SELECT record FROM caches WHERE kind = ? ORDER BY id", (kind.value,))
        return [CacheRecord.model_validate_json(r[0]) for r in rows.fetchall()]

    @classmethod
    def delete_cache(cls, db: sqlite3.Connection, cache_id: str) -> None:
        db.execute(
            "INSERT INTO deleted_caches (id, version) VALUES (?, ?) "
            "ON CONFLICT(id) DO UPDATE SET version = excluded.version",
            (cache_id, cls._bump(db)),
        )
        for table, column in (
            ("builds", "cache_id"),
            ("build_layers", "cache_id"),
            ("caches", "id"),
            ("cache_events", "cache_id"),
            ("cache_layers", "cache_id"),
        ):
            db.execute(f"DELETE FROM {table} WHERE {column} = ?", (cache_id,))

    # events -----------------------------------------------------------------------------

    @staticmethod
    def add_event(db: sqlite3.Connection, cache_id: str, event: CacheEvent) -> None:
        db.execute(
            "INSERT INTO cache_events (cache_id, event) VALUES (?, ?)",
            (cache_id, event.model_dump_json()),
        )
        db.execute(
            "DELETE FROM cache_events WHERE cache_id = ? AND seq NOT IN "
            "(SELECT seq FROM cache_events WHERE cache_id = ? ORDER BY seq DESC LIMIT ?)",
            (cache_id, cache_id, MAX_EVENTS),
        )

    def events(self, cache_id: str) -> list[CacheEvent]:
        with self.read() as db:
            rows = db.execute(
                "SELECT event FROM cache_events WHERE cache_id = ? ORDER BY seq", (cache_id,)
            ).fetchall()
        return [CacheEvent.model_validate_json(r[0]) for r in rows]

    @staticmethod
    def add_removal(db: sqlite3.Connection, cache_id: str, event: CacheEvent) -> None:
        db.execute(
            "INSERT INTO removals (cache_id, event) VALUES (?, ?)",
            (cache_id, event.model_dump_json()),
        )
        db.execute(
            "DELETE FROM removals WHERE seq <= (SELECT max(seq) FROM removals) - ?",
            (MAX_REMOVALS,),
        )

    @staticmethod
    def removals(db: sqlite3.Connection, cache_id: str) -> list[CacheEvent]:
        rows = db.execute(
            "SELECT event FROM removals WHERE cache_id = ? ORDER BY seq", (cache_id,)
        ).fetchall()
        return [CacheEvent.model_validate_json(r[0]) for r in rows]

    # layers -----------------------------------------------------------------------------

    @staticmethod
    def set_layers(db: sqlite3.Connection, cache_id: str, layers: dict[str, int]) -> None:
        db.execute("DELETE FROM cache_layers WHERE cache_id = ?", (cache_id,))
        db.executemany(
            "INSERT INTO cache_layers (cache_id, digest, size) VALUES (?, ?, ?)",
            [(cache_id, d, s) for d, s in layers.items()],
        )

    @staticmethod
    def referenced_among(db: sqlite3.Connection, digests: Iterable[str]) -> set[str]:
        """Which of ``digests`` some cache holds (one index lookup each, not a scan)."""
        wanted = sorted(set(digests))
        held: set[str] = set()
        for start in range(0, len(wanted), 500):
            batch = wanted[start : start + 500]
            marks = ",".join("?" * len(batch))
            rows = db.execute(
                f"SELECT DISTINCT digest FROM cache_layers WHERE digest IN ({marks})", batch
            )
            held.update(r[0] for r in rows)
        return held

    @staticmethod
    def unheld(
        db: sqlite3.Connection,
        digests: Iterable[str],
        in_use: Callable[[], Collection[str]],
        excluding: Collection[str] = (),
        ended_builds: Collection[str] = (),
    ) -> set[str]:
        """Of ``digests``, those nothing holds any more: the one rule by which a cache's delete
        and gc decide which blobs and unpacked layers may go. A digest is held by a cache's
        record (but those of the caches ``excluding`` names, on their way out), by a build in
        progress (but those ``ended_builds`` names, which recovery will end), or by the
        containers of a container group (``in_use()``, the layers they are mounted on: asked
        only when a digest is left). Indexed lookups: a delete costs what its cache holds,
        not what the store holds."""
        wanted = sorted(set(digests))
        skipped_caches, skipped_builds = set(excluding), set(excluding) | set(ended_builds)
        held: set[str] = set()
        tables = [("cache_layers", skipped_caches), ("build_layers", skipped_builds)]
        if not Store.has_table(db, "build_layers"):  # a store read before its migration
            tables.pop()
        for start in range(0, len(wanted), 500):
            batch = wanted[start : start + 500]
            marks = ",".join("?" * len(batch))
            for table, skipped in tables:
                rows = db.execute(
                    f"SELECT cache_id, digest FROM {table} WHERE digest IN ({marks})", batch
                )
                held.update(digest for cache_id, digest in rows if cache_id not in skipped)
        left = set(wanted) - held
        return left - set(in_use()) if left else left

    @staticmethod
    def cache_layers(db: sqlite3.Connection, cache_id: str) -> dict[str, int]:
        rows = db.execute("SELECT digest, size FROM cache_layers WHERE cache_id = ?", (cache_id,))
        return dict(rows.fetchall())

    # builds in progress ---------------------------------------------------------------------

    @staticmethod
    def start_build(
        db: sqlite3.Connection, cache_id: str, host: str, pid: int, digests: Iterable[str] = ()
    ) -> None:
        """Claim the build of ``cache_id``, holding the blobs it will hold (``digests``)."""
        db.execute(
            "INSERT OR REPLACE INTO builds (cache_id, host, pid) VALUES (?, ?, ?)",
            (cache_id, host, pid),
        )
        db.execute("DELETE FROM build_layers WHERE cache_id = ?", (cache_id,))
        db.executemany(
            "INSERT OR IGNORE INTO build_layers (cache_id, digest) VALUES (?, ?)",
            [(cache_id, digest) for digest in digests],
        )

    @staticmethod
    def end_build(db: sqlite3.Connection, cache_id: str) -> None:
        db.execute("DELETE FROM builds WHERE cache_id = ?", (cache_id,))
        db.execute("DELETE FROM build_layers WHERE cache_id = ?", (cache_id,))

    @staticmethod
    def builds(db: sqlite3.Connection) -> list[tuple[str, str, int]]:
        return db.execute("SELECT cache_id, host, pid FROM builds").fetchall()

    # container groups ---------------------------------------------------------------------

    @staticmethod
    def put_group(
        db: sqlite3.Connection,
        record: ContainerGroupRecord,
        client_token: str | None = None,
        request: str | None = None,
    ) -> None:
        """Insert or update; a group keeps the client token (and request digest) it was
        created with."""
        db.execute(
            "INSERT INTO container_groups (id, name, record, client_token, request) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET name = excluded.name, "
            "record = excluded.record, "
            "client_token = coalesce(excluded.client_token, container_groups.client_token), "
            "request = coalesce(excluded.request, container_groups.request)",
            (record.id, record.name, record.model_dump_json(), client_token, request),
        )

    @staticmethod
    def group_for_token(
        db: sqlite3.Connection, client_token: str
    ) -> tuple[ContainerGroupRecord, str | None] | None:
        """The group a create with this token made, and the digest of its request."""
        row = db.execute(
            "SELECT record, request FROM container_groups WHERE client_token = ?", (client_token,)
        ).fetchone()
        return (ContainerGroupRecord.model_validate_json(row[0]), row[1]) if row else None

    @staticmethod
    def get_group(db: sqlite3.Connection, group_id: str) -> ContainerGroupRecord | None:
        row = db.execute("SELECT record FROM container_groups WHERE id = ?", (group_id,)).fetchone()
        return ContainerGroupRecord.model_validate_json(row[0]) if row else None

    @staticmethod
    def list_groups(db: sqlite3.Connection) -> list[ContainerGroupRecord]:
        rows = db.execute("SELECT record FROM container_groups ORDER BY id").fetchall()
        return [ContainerGroupRecord.model_validate_json(r[0]) for r in rows]

    @staticmethod
    def caches_in_use(db: sqlite3.Connection) -> set[str]:
        """Caches that container groups name (a group holds its cache until it is deleted)."""
        rows = db.execute(
            "SELECT DISTINCT json_extract(record, '$.cache_id') FROM container_groups "
            "WHERE json_extract(record, '$.cache_id') IS NOT NULL"
        )
        return {r[0] for r in rows.fetchall()}

    @staticmethod
    def delete_group(db: sqlite3.Connection, group_id: str) -> None:
        db.execute("DELETE FROM container_groups WHERE id = ?", (group_id,))
