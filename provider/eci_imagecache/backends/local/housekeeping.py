"""Housekeeping: quotas and eviction, recovery of builds whose process died, expiry, and gc of
what no record needs any more (failed caches, blobs)."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

from ...engine import lifecycle
from ...engine.models import CacheKind, CacheRecord, CacheStatus, Quota
from ..base import GcReport, QuotaExceeded, Usage
from .context import Context, build_ended, interrupted, pid_alive
from .ids import GROUP_ID, SNAPSHOT_ID


class Housekeeping:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.store = ctx.store

    # quota --------------------------------------------------------------------------------

    @property
    def quota(self) -> Quota:
        with self.store.read() as db:
            return self.store.quota(db)

    def set_quota(self, quota: Quota) -> None:
        with self.store.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('quota', ?)",
                (quota.model_dump_json(),),
            )

    def make_room(
        self, db: sqlite3.Connection, kind: CacheKind, what: str | None = None
    ) -> list[CacheRecord]:
        """Evict (in ``db``'s transaction) what the engine chooses so one more cache of ``kind``
        fits; returns the evicted records. Records are read only when at the quota."""
        quota = self.quota
        if self.store.count_caches(db, kind) < quota.limit(kind):
            return []
        caches = self.store.caches_of_kind(db, kind)
        try:
            victims = lifecycle.make_room(caches, kind, quota, self.store.caches_in_use(db))
        except lifecycle.QuotaExceeded as err:
            raise QuotaExceeded(f"{what}: {err}" if what else str(err)) from None
        for victim in victims:
            why = f"evicted (LRU) at the quota of {quota.limit(kind)} {kind.value} caches"
            self.ctx.delete_cache(db, victim.id, ("Evicted", f"{why}, for {what or 'a new cache'}"))
        return victims

    def usage(self, caches: list[CacheRecord]) -> Usage:
        return Usage.of(self.quota, caches)

    # recovery -----------------------------------------------------------------------------

    def _dead(self, host: str, cache_id: str, pid: int) -> bool:
        return build_ended(host, pid, cache_id, self.ctx.host)

    def recover(self) -> list[str]:
        """Fail builds whose process died (so they are never matched) and drop their temp files
        and half-unpacked layers."""
        failed: list[str] = []
        with self.store.read() as db:
            builds = self.store.builds(db)
        if any(self._dead(host, cache_id, pid) for cache_id, host, pid in builds):
            with self.store.transaction() as db:
                for cache_id, host, pid in self.store.builds(db):
                    if not self._dead(host, cache_id, pid):
                        continue
                    record = self.store.get_cache(db, cache_id)
                    self.store.end_build(db, cache_id)
                    if record is None or record.status not in (
                        CacheStatus.CREATING,
                        CacheStatus.UPDATING,
                    ):
                        continue
                    self.ctx.fail(db, record, interrupted(pid))
                    failed.append(cache_id)
        with contextlib.suppress(OSError):  # a read-only file system keeps them for later
            self.ctx.blobs.remove_stale_temp_files(pid_alive)
            self.ctx.layers.remove_stale_temp_dirs(pid_alive)
        return failed

    # expiry and gc ------------------------------------------------------------------------

    def expire(self, dry_run: bool = False) -> list[str]:
        """Delete caches whose retention or automatic expiry has passed."""
        now = self.ctx.clock()
        with self.store.read() as db:
            if not self.store.due_caches(db, now):
                return []
        with self.store.transaction() as db:
            due = lifecycle.due_for_deletion(self.store.due_caches(db, now), now)
            if not dry_run:
                for expiry in due:
                    self.ctx.delete_cache(db, expiry.cache_id, ("Expired", expiry.reason))
        return [f"{e.cache_id} ({e.reason})" for e in due]

    def gc(self, dry_run: bool = False, grace: timedelta = timedelta(minutes=10)) -> GcReport:
        """Apply expiry now, delete failed caches (never usable), and remove blobs, snapshot
        files and group directories no record names any more (left by a process that died
        between writing them and its commit). Files younger than ``grace`` stay: a build or a
        container group may have written them and not committed yet."""
        expired = self.expire(dry_run=dry_run)
        with self.store.transaction() as db:
            failed = [c for c in self.store.list_caches(db) if c.status == CacheStatus.FAILED]
            if not dry_run:
                for cache in failed:
                    self.ctx.delete_cache(db, cache.id, ("Deleted", f"gc: {cache.failure}"))
            referenced = self.store.referenced_digests(db)
            snapshots = {c.snapshot_id for c in self.store.list_caches(db) if c.snapshot_id}
            groups = {g.id for g in self.store.list_groups(db)}
        blobs = self.ctx.blobs
        cutoff = time.time() - grace.total_seconds()
        files = self._orphan_files(snapshots, groups, cutoff)
        orphans = [
            d
            for d in blobs.digests()
            if d not in referenced and blobs.path(d).stat().st_mtime <= cutoff
        ]
        # Unpacked layers no cache holds and no group runs on go with their blobs.
        layers = self.ctx.layers
        in_use = self.ctx.runtime.layers_in_use()
        unused_layers = [
            d
            for d in layers.digests()
            if d not in referenced and d not in in_use and _mtime(layers.path(d)) <= cutoff
        ]
        freed = sum(blobs.path(d).stat().st_size for d in orphans)
        freed += sum(layers.size(d) for d in unused_layers)
        if not dry_run:
            for digest in orphans:
                blobs.remove(digest)
            for digest in unused_layers:
                layers.remove(digest)
            for path in files:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        return GcReport(
            expired=expired,
            failed=[f"{c.id} ({c.failure})" for c in failed],
            blobs_removed=len(orphans),
            layers_removed=len(unused_layers),
            bytes_freed=freed,
            dry_run=dry_run,
            files_removed=len(files),
        )

    def _orphan_files(self, snapshots: set[str], groups: set[str], cutoff: float) -> list[Path]:
        """Snapshot files and group directories older than ``cutoff`` that no record names;
        only names this backend makes are considered (nothing else in the directory)."""
        found = []
        root = self.ctx.snapshots.root
        for path in root.iterdir():
            name = path.name.removeprefix(".").removesuffix(".json").removesuffix(".tmp")
            kept = path.name.endswith(".json") and name in snapshots
            if SNAPSHOT_ID.fullmatch(name) and not kept and _mtime(path) <= cutoff:
                found.append(path)
        if self.ctx.groups_dir.is_dir():
            for path in self.ctx.groups_dir.iterdir():
                orphan = GROUP_ID.fullmatch(path.name) and path.name not in groups
                if orphan and _mtime(path) <= cutoff:
                    found.append(path)
        return found


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except FileNotFoundError:
        return float("inf")
