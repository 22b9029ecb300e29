"""What the runtime knows about groups and containers, in SQLite (the backend's database file).

Written by the process that starts a group and by the group's shim (a separate, long-lived
process), read by anyone; each write is one short ``BEGIN IMMEDIATE`` transaction, on a
connection each thread keeps (opened by :mod:`eci_imagecache.database`). The tables are the
runtime's own (``runtime_*``), made and migrated on open, recorded as the owner "runtime".

Commits are not flushed to disk one by one (WAL with ``synchronous=NORMAL``, as the backend's
store): a commit survives the death of the process that made it, and what a power loss could
take back describes processes that the power loss ended too (recovery finds them gone either
way).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..database import Database, Schema, schema_version


def _previous_version(db: sqlite3.Connection) -> int:
    """Releases before versions were recorded made the tables when missing and added the
    address column (with its index, in one transaction) when missing: the version is what
    is there."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not {"runtime_groups", "runtime_containers"} <= tables:
        return 0
    columns = {row[1] for row in db.execute("PRAGMA table_info(runtime_groups)")}
    return 2 if "address" in columns else 1


SCHEMA = Schema(
    "runtime",
    [
        # 1: groups and their containers
        """
        CREATE TABLE runtime_groups (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            dir TEXT NOT NULL,
            restart_policy TEXT NOT NULL,
            owner_pid INTEGER,
            shim_pid INTEGER,
            shim_start TEXT,
            status TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            requested_at REAL NOT NULL,
            first_process_at REAL
        );
        CREATE TABLE runtime_containers (
            group_id TEXT NOT NULL,
            name TEXT NOT NULL,
            seq INTEGER NOT NULL,
            init INTEGER NOT NULL,
            state TEXT NOT NULL,
            exit_code INTEGER,
            restart_count INTEGER NOT NULL DEFAULT 0,
            started_at REAL,
            finished_at REAL,
            reason TEXT NOT NULL DEFAULT '',
            ports TEXT NOT NULL DEFAULT '[]',
            PRIMARY KEY (group_id, name)
        )
        """,
        # 2: each group's own address on the host's loopback, one group per address (NULL:
        # none, any number)
        """
        ALTER TABLE runtime_groups ADD COLUMN address TEXT;
        CREATE UNIQUE INDEX runtime_groups_address ON runtime_groups (address)
        """,
    ],
    adopt=_previous_version,
)
ADDRESSES = 2  # the version that gave groups an address

# Group statuses, with ECI's names.
PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"
# Container states, with ECI's (and Kubernetes') names.
WAITING, CONTAINER_RUNNING, TERMINATED = "Waiting", "Running", "Terminated"


@dataclass
class ContainerState:
    name: str
    init: bool = False
    state: str = WAITING
    exit_code: int | None = None
    restart_count: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    reason: str = ""
    ports: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GroupState:
    id: str
    name: str
    dir: str
    restart_policy: str
    status: str
    reason: str
    requested_at: float
    first_process_at: float | None
    owner_pid: int | None
    shim_pid: int | None
    shim_start: str | None
    containers: list[ContainerState]
    # The group's own address on the host's loopback, where its ports are published (None: a
    # group started before groups had a network of their own, on the host's).
    address: str | None = None

    @property
    def first_process_seconds(self) -> float | None:
        """From the request to start the group to its first container's process running."""
        if self.first_process_at is None:
            return None
        return max(0.0, self.first_process_at - self.requested_at)


class RuntimeState:
    def __init__(self, path: Path, read_only: bool = False, create: bool = True) -> None:
        """``read_only``: open the database for reading only (``mode=ro``): nothing is
        created or written, and a write raises :class:`~eci_imagecache.database.Unwritable`.
        ``create=False``: open a database the runtime made already, now (a missing file raises
        sqlite3.OperationalError instead of being made: a shim whose store was removed)."""
        self.path = path
        self.read_only = read_only
        self.create = create
        self.db = Database(path, read_only=read_only, create=create)
        if read_only:
            return
        if not create:
            self.db.connection()
            return
        self.db.migrate(SCHEMA)  # writes only when behind: reads work on a full disk

    def write(self) -> AbstractContextManager[sqlite3.Connection]:
        return self.db.write()

    def read(self) -> AbstractContextManager[sqlite3.Connection]:
        return self.db.read()

    def _version(self, db: sqlite3.Connection) -> int:
        """A writer has migrated; a read-only view reads the database as it is (a store no
        writer has opened since it came from an earlier release, or none has written yet)."""
        return schema_version(db, SCHEMA) if self.read_only else SCHEMA.version

    # groups -------------------------------------------------------------------------------

    def add_group(
        self,
        group_id: str,
        name: str,
        directory: Path,
        restart_policy: str,
        containers: list[ContainerState],
        owner_pid: int,
        requested_at: float,
        shim_pid: int | None = None,
        shim_start: str | None = None,
        claim_address: Callable[[set[str]], str] | None = None,
    ) -> None:
        """Record a new group. ``claim_address`` is given the addresses other groups hold and
        returns the group's own, in the same transaction (no other start can take it meanwhile)."""
        with self.write() as db:
            address = None
            if claim_address is not None:
                used = db.execute("SELECT address FROM runtime_groups WHERE address IS NOT NULL")
                address = claim_address({row[0] for row in used})
            db.execute(
                "INSERT INTO runtime_groups (id, name, dir, restart_policy, owner_pid, shim_pid, "
                "shim_start, status, requested_at, address) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    group_id,
                    name,
                    str(directory),
                    restart_policy,
                    owner_pid,
                    shim_pid,
                    shim_start,
                    PENDING,
                    requested_at,
                    address,
                ),
            )
            db.executemany(
                "INSERT INTO runtime_containers (group_id, name, seq, init, state, ports) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (group_id, c.name, n, int(c.init), WAITING, json.dumps(c.ports))
                    for n, c in enumerate(containers)
                ],
            )

    def set_group(self, group_id: str, **fields: Any) -> None:
        if not fields:
            return
        columns = ", ".join(f"{key} = ?" for key in fields)
        with self.write() as db:
            db.execute(
                f"UPDATE runtime_groups SET {columns} WHERE id = ?", (*fields.values(), group_id)
            )

    def set_container(
        self, group_id: str, name: str, first_process: bool = False, **fields: Any
    ) -> None:
        """Update a container and, in the same transaction, its group's status (and the time
        of the group's first process when ``first_process``)."""
        columns = ", ".join(f"{key} = ?" for key in fields)
        with self.write() as db:
            db.execute(
                f"UPDATE runtime_containers SET {columns} WHERE group_id = ? AND name = ?",
                (*fields.values(), group_id, name),
            )
            if first_process:
                db.execute(
                    "UPDATE runtime_groups SET first_process_at = ? "
                    "WHERE id = ? AND first_process_at IS NULL",
                    (fields["started_at"], group_id),
                )
            self._derive(db, group_id)

    def _derive(self, db: sqlite3.Connection, group_id: str) -> None:
        row = db.execute(
            "SELECT status, reason FROM runtime_groups WHERE id = ?", (group_id,)
        ).fetchone()
        if row is None or (row[0] == FAILED and row[1]):
            return  # a failure with a reason (an init container, a mount, a dead shim) stays
        rows = db.execute(
            "SELECT name, init, state, exit_code, started_at FROM runtime_containers "
            "WHERE group_id = ?",
            (group_id,),
        ).fetchall()
        containers = [
            ContainerState(name=r[0], init=bool(r[1]), state=r[2], exit_code=r[3], started_at=r[4])
            for r in rows
        ]
        failed = [c for c in containers if c.init and c.state == TERMINATED and c.exit_code != 0]
        reason = (
            f"init container {failed[0].name} exited with code {failed[0].exit_code}"
            if failed
            else ""
        )
        db.execute(
            "UPDATE runtime_groups SET status = ?, reason = ? WHERE id = ?",
            (derive_status(containers), reason, group_id),
        )

    def group(self, group_id: str) -> GroupState | None:
        with self.read() as db:
            version = self._version(db)
            if version == 0:  # a read-only view of a database no runtime has written yet
                return None
            address = "address" if version >= ADDRESSES else "NULL"
            row = db.execute(
                "SELECT id, name, dir, restart_policy, status, reason, requested_at, "
                f"first_process_at, owner_pid, shim_pid, shim_start, {address} "
                "FROM runtime_groups WHERE id = ?",
                (group_id,),
            ).fetchone()
            if row is None:
                return None
            rows = db.execute(
                "SELECT name, init, state, exit_code, restart_count, started_at, finished_at, "
                "reason, ports FROM runtime_containers WHERE group_id = ? ORDER BY seq",
                (group_id,),
            ).fetchall()
        containers = [
            ContainerState(
                name=r[0],
                init=bool(r[1]),
                state=r[2],
                exit_code=r[3],
                restart_count=r[4],
                started_at=r[5],
                finished_at=r[6],
                reason=r[7],
                ports=json.loads(r[8]),
            )
            for r in rows
        ]
        return GroupState(*row[:-1], containers=containers, address=row[-1])

    def group_ids(self) -> list[str]:
        with self.read() as db:
            if self._version(db) == 0:
                return []
            return [r[0] for r in db.execute("SELECT id FROM runtime_groups ORDER BY id")]

    @staticmethod
    def adopted(db: sqlite3.Connection, group_id: str) -> None:
        """No process owns the group's start any more (in the caller's transaction)."""
        db.execute("UPDATE runtime_groups SET owner_pid = NULL WHERE id = ?", (group_id,))

    def remove_group(self, group_id: str) -> None:
        with self.write() as db:
            db.execute("DELETE FROM runtime_groups WHERE id = ?", (group_id,))
            db.execute("DELETE FROM runtime_containers WHERE group_id = ?", (group_id,))


def derive_status(containers: list[ContainerState]) -> str:
    """The group's status from its containers' (ECI's rules)."""
    mains = [c for c in containers if not c.init]
    if any(c.init and c.state == TERMINATED and c.exit_code != 0 for c in containers):
        return FAILED
    if mains and all(c.state == TERMINATED for c in mains):
        return SUCCEEDED if all(c.exit_code == 0 for c in mains) else FAILED
    if any(c.started_at is not None for c in mains):
        return RUNNING
    return PENDING


def now() -> float:
    return time.time()
