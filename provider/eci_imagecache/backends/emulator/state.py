"""What the emulator keeps beside the local backend, in its own SQLite file.

- Signature nonces, with the wall-clock time they were seen: a request captured before a restart
  is still refused after it (a nonce is forgotten only once its date is too old to be accepted).
- ClientTokens: the first result of a create, so a repeated token gets that result back.
- What the cloud keeps about a cache or group that the local backend does not model (tags,
  resource group, zone, the build instance, the group's containers as they were asked for, the
  IP addresses it gave the group).
- Counters (the addresses handed out so far), so no two groups get the same address.

Opened by :mod:`eci_imagecache.database`; its tables are recorded there as the owner "emulator".
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from ...database import Database, Schema


def _previous_version(db: sqlite3.Connection) -> int:
    """Releases before versions were recorded made every table when missing, on each open."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return 1 if {"nonces", "tokens", "extras", "counters"} <= tables else 0


SCHEMA = Schema(
    "emulator",
    [
        # 1: nonces, tokens, what the cloud keeps beside the backend, counters (IF NOT EXISTS:
        # a file an earlier release made before it had every table gains the missing ones)
        """
        CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, seen REAL NOT NULL);
        CREATE INDEX IF NOT EXISTS nonces_seen ON nonces (seen);
        CREATE TABLE IF NOT EXISTS tokens (
            action TEXT NOT NULL, token TEXT NOT NULL, result TEXT NOT NULL, created REAL NOT NULL,
            PRIMARY KEY (action, token)
        );
        CREATE TABLE IF NOT EXISTS extras (
            kind TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (kind, id)
        );
        CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)
        """,
    ],
    adopt=_previous_version,
)


class EmulatorState:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        # One connection that the server's threads (one per client connection) take turns on.
        self._db = Database(path, shared=True)
        self._db.migrate(SCHEMA)
        self._lock = threading.Lock()  # guards _token_locks
        self._token_locks: dict[tuple[str, str], threading.Lock] = {}

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._db.write()

    def close(self) -> None:
        self._db.close()

    # nonces -------------------------------------------------------------------------------

    def fresh_nonce(self, nonce: str, horizon_seconds: float) -> bool:
        """True the first time a nonce is seen within the horizon (persisted across restarts)."""
        if not nonce:
            return False
        now = self.clock()
        with self._tx() as db:
            db.execute("DELETE FROM nonces WHERE seen < ?", (now - horizon_seconds,))
            if db.execute("SELECT 1 FROM nonces WHERE nonce = ?", (nonce,)).fetchone():
                return False
            db.execute("INSERT INTO nonces (nonce, seen) VALUES (?, ?)", (nonce, now))
            return True

    # client tokens ------------------------------------------------------------------------

    def once(
        self,
        action: str,
        token: str | None,
        create: Callable[[], str],
        alive: Callable[[str], bool],
    ) -> str:
        """One create per ClientToken, even when retries race: a token whose result still
        exists gets that result; other tokens are not held up."""
        if not token:
            return create()
        key = (action, token)
        with self._lock:
            lock = self._token_locks.setdefault(key, threading.Lock())
        with lock:
            with self._db.read() as db:
                row = db.execute(
                    "SELECT result FROM tokens WHERE action = ? AND token = ?", key
                ).fetchone()
            if row and alive(row[0]):
                return str(row[0])
            result = create()
            with self._tx() as db:
                db.execute(
                    "INSERT OR REPLACE INTO tokens (action, token, result, created) "
                    "VALUES (?, ?, ?, ?)",
                    (*key, result, self.clock()),
                )
            return result

    # counters -----------------------------------------------------------------------------

    def next_number(self, name: str) -> int:
        """0, 1, 2, ... for each name, kept across restarts."""
        with self._tx() as db:
            row = db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
            value = row[0] if row else 0
            db.execute(
                "INSERT OR REPLACE INTO counters (name, value) VALUES (?, ?)", (name, value + 1)
            )
            return int(value)

    # what the cloud keeps beside the backend's records ------------------------------------

    def put_extra(self, kind: str, id_: str, data: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO extras (kind, id, data) VALUES (?, ?, ?)",
                (kind, id_, json.dumps(data)),
            )

    def extra(self, kind: str, id_: str) -> dict[str, Any]:
        with self._db.read() as db:
            row = db.execute(
                "SELECT data FROM extras WHERE kind = ? AND id = ?", (kind, id_)
            ).fetchone()
        return json.loads(row[0]) if row else {}

    def drop_extra(self, kind: str, id_: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM extras WHERE kind = ? AND id = ?", (kind, id_))
