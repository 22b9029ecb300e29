"""Housekeeping: quotas and eviction, recovery of builds whose process died, expiry, and gc of
what no record needs any more (failed caches, blobs)."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from ...engine import lifecycle
from ...engine.models import CacheKind, CacheRecord, CacheStatus, Quota
from ...runtime.layers import LayerStore
from ..base import GcReport, QuotaExceeded, Usage
from .blobs import BlobStore
from .context import Context, as_failed, build_ended, interrupted, pid_alive
from .ids import GROUP_ID, SNAPSHOT_ID
from .store import Store


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
        except lifecycle.QuotaReached as err:
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
        container group may have written them and not committed yet. ``dry_run``: find the
        same, in a read, and change nothing."""
        ctx = self.ctx
        stored = on_disk(ctx.blobs, ctx.layers)
        in_use = ctx.runtime.layers_in_use()
        if dry_run:
            with self.store.read() as db:
                to_delete = find_records_to_delete(self.store, db, ctx.clock(), stored, in_use)
        else:
            with self.store.transaction() as db:
                to_delete = find_records_to_delete(self.store, db, ctx.clock(), stored, in_use)
                # What these caches hold is counted and removed below, with the rest.
                for expiry in to_delete.expired:
                    ctx.delete_cache(db, expiry.cache_id, ("Expired", expiry.reason), release=False)
                for cache in to_delete.failed:
                    why = ("Deleted", f"gc: {cache.failure}")
                    ctx.delete_cache(db, cache.id, why, release=False)
        found = find_files_to_remove(
            ctx.blobs,
            ctx.layers,
            ctx.snapshots.root,
            ctx.groups_dir,
            to_delete,
            time.time() - grace.total_seconds(),
            ctx.runtime.group_ids(),
        )
        if not dry_run:
            found.remove()
        return found.report(to_delete, dry_run)


@dataclass
class RecordsToDelete:
    """The records gc deletes, and what nothing holds once they are gone."""

    expired: list[lifecycle.Expiry]
    failed: list[CacheRecord]
    unheld: set[str]  # digests stored that nothing holds (Store.unheld)
    snapshots: set[str]  # snapshot files records name (a deleted cache's goes with it)
    groups: set[str]  # container groups recorded


def on_disk(blobs: BlobStore, layers: LayerStore) -> set[str]:
    """Digests of the blobs and unpacked layers stored (listed before gc reads the records:
    what is written after the listing is not gc's to judge)."""
    return set(blobs.digests()) | set(layers.digests())


def find_records_to_delete(
    store: Store,
    db: sqlite3.Connection,
    now: datetime,
    stored: Iterable[str],
    in_use: Collection[str],
    ended: Mapping[str, int] | None = None,
) -> RecordsToDelete:
    """Read in ``db`` what gc deletes: caches past their expiry, then failed caches, and of
    the digests ``stored``, those nothing holds once they are gone (``in_use``: the layers
    container groups are mounted on). ``ended``: builds (cache id: pid) whose process has
    ended and that recovery has not recorded yet, counted as it will record them (failed, or
    a rebuild back to its snapshot)."""
    ended = ended or {}
    records = [
        as_failed(r, interrupted(ended[r.id]))
        if r.id in ended and r.status in (CacheStatus.CREATING, CacheStatus.UPDATING)
        else r
        for r in store.list_caches(db)
    ]
    expired = lifecycle.due_for_deletion(records, now)
    gone = {e.cache_id for e in expired}
    failed = [c for c in records if c.status == CacheStatus.FAILED and c.id not in gone]
    gone |= {c.id for c in failed}
    return RecordsToDelete(
        expired=expired,
        failed=failed,
        unheld=store.unheld(db, stored, lambda: in_use, excluding=gone, ended_builds=ended),
        snapshots={c.snapshot_id for c in records if c.snapshot_id},
        groups={g.id for g in store.list_groups(db)},
    )


@dataclass
class FilesToRemove:
    """Files gc removes: blobs and unpacked layers no cache holds (and no group runs on),
    snapshot files and group directories no record names."""

    blobs: BlobStore
    layers: LayerStore
    blob_digests: list[str]
    layer_digests: list[str]
    files: list[Path]
    bytes: int

    def remove(self) -> None:
        for digest in self.blob_digests:
            self.blobs.remove(digest)
        for digest in self.layer_digests:
            self.layers.remove(digest)
        for path in self.files:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def report(self, to_delete: RecordsToDelete, dry_run: bool) -> GcReport:
        return GcReport(
            expired=[f"{e.cache_id} ({e.reason})" for e in to_delete.expired],
            failed=[f"{c.id} ({c.failure})" for c in to_delete.failed],
            blobs_removed=len(self.blob_digests),
            layers_removed=len(self.layer_digests),
            bytes_freed=self.bytes,
            dry_run=dry_run,
            files_removed=len(self.files),
        )


def find_files_to_remove(
    blobs: BlobStore,
    layers: LayerStore,
    snapshots_dir: Path,
    groups_dir: Path,
    to_delete: RecordsToDelete,
    cutoff: float,
    runtime_groups: Iterable[str],
    removed_groups: Iterable[str] = (),
) -> FilesToRemove:
    """What gc removes from the files, once the records ``to_delete`` names are deleted: only
    files older than ``cutoff``, and only names this backend makes. ``runtime_groups``: the
    groups the runtime holds (one being created has no record yet: its directory stays).
    ``removed_groups``: group directories recovery removes first (not counted here)."""
    unheld = to_delete.unheld
    orphans = [d for d in blobs.digests() if d in unheld and _mtime(blobs.path(d)) <= cutoff]
    # Unpacked layers nothing holds go with their blobs.
    unused_layers = [
        d for d in layers.digests() if d in unheld and _mtime(layers.path(d)) <= cutoff
    ]
    freed = sum(_size(blobs.path(d)) for d in orphans)
    freed += sum(layers.size(d) for d in unused_layers)
    files = []
    if snapshots_dir.is_dir():
        for path in snapshots_dir.iterdir():
            name = path.name.removeprefix(".").removesuffix(".json").removesuffix(".tmp")
            kept = path.name.endswith(".json") and name in to_delete.snapshots
            if SNAPSHOT_ID.fullmatch(name) and not kept and _mtime(path) <= cutoff:
                files.append(path)
    if groups_dir.is_dir():
        skipped = to_delete.groups | set(runtime_groups) | set(removed_groups)
        for path in groups_dir.iterdir():
            orphan = GROUP_ID.fullmatch(path.name) and path.name not in skipped
            if orphan and _mtime(path) <= cutoff:
                files.append(path)
    return FilesToRemove(blobs, layers, orphans, unused_layers, files, freed)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except FileNotFoundError:
        return float("inf")
