"""A read-only view of the local backend, for commands that only look.

Opening :class:`~.backend.LocalBackend` recovers: it fails builds whose process died, stops
containers no record claims, and its matching deletes caches past their expiry. A read must
not: this view opens the store read-only and shows what the records and the process table say,
including what recovery would act on (a build whose process has ended, a group whose supervisor
has died, containers started by a process that died before recording them). Caches past their
expiry are gone for it, as for every read, but stay in the store. It starts, stops, unmounts,
deletes and writes nothing; reconciling is left to the commands that write (the provider's
operations, ``eci-imagecache gc``).
"""

from __future__ import annotations

import socket
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ...engine.lifecycle import expired, expiry_reason
from ...engine.matcher import CacheIndex, MatchResult
from ...engine.models import (
    BASE_EPHEMERAL_STORAGE_GIB,
    CacheEvent,
    CacheRecord,
    CacheStatus,
    ContainerGroupRecord,
    ContainerGroupSpec,
    GroupStatus,
    Quota,
)
from ...runtime import host
from ...runtime.layers import LayerStore
from ...runtime.state import PENDING, RUNNING, GroupState
from ...runtime.supervisor import Runtime, StartError
from ..base import GcReport, NotFound, Usage
from .blobs import BlobStore
from .context import (
    LOCAL_REGION,
    Clock,
    as_failed,
    build_ended,
    default_data_dir,
    interrupted,
    utc_now,
)
from .groups import check_container, observed
from .housekeeping import find_files_to_remove, find_records_to_delete, on_disk
from .store import Store

# Who acts on what a view shows: every writer recovers when it opens the store.
RECOVERY = "recovery (the next pulumi up, or eci-imagecache gc)"


class LocalView:
    def __init__(
        self, data_dir: Path | None = None, region: str = LOCAL_REGION, clock: Clock = utc_now
    ) -> None:
        self.data_dir = data_dir or default_data_dir()
        self.region = region
        self.clock = clock
        self.host = socket.gethostname()
        path = self.data_dir / "state.db"
        # No store yet: nothing was ever made here (and a read creates nothing).
        self._store = Store(path, read_only=True) if path.is_file() else None
        self._runtime = Runtime.reader(self.data_dir / "groups", path) if self._store else None

    # image caches -------------------------------------------------------------------------

    def _caches(self, cache_id: str | None = None) -> list[CacheRecord]:
        """Caches as recorded, each as it is: a build whose process has ended is shown failed
        as recovery will record it (the record still says it builds)."""
        if self._store is None:
            return []
        store = self._store
        with store.read() as db:
            if not store.has_table(db, "caches"):
                return []
            if cache_id is None:
                records = store.list_caches(db)
            else:
                one = store.get_cache(db, cache_id)
                records = [one] if one else []
            ended = self._ended(db)
        return [self._built(r, ended.get(r.id)) for r in records]

    def _ended(self, db: sqlite3.Connection) -> dict[str, int]:
        """Builds (cache id: pid) whose process has ended: recovery records them failed."""
        assert self._store is not None
        return {
            build: pid
            for build, on, pid in self._store.builds(db)
            if build_ended(on, pid, build, self.host)
        }

    @staticmethod
    def _built(record: CacheRecord, ended: int | None) -> CacheRecord:
        if ended is None or record.status not in (CacheStatus.CREATING, CacheStatus.UPDATING):
            return record
        return as_failed(record, f"{interrupted(ended)}; {RECOVERY} records it")

    def list_image_caches(self) -> list[CacheRecord]:
        now = self.clock()
        return [c for c in self._caches() if not expired(c, now)]

    def get_image_cache(self, cache_id: str) -> CacheRecord:
        found = self._caches(cache_id)
        if not found:
            raise NotFound(f"image cache {cache_id} not found")
        if expired(found[0], self.clock()):
            raise NotFound(f"image cache {cache_id} not found ({expiry_reason(found[0])})")
        return found[0]

    def events(self, cache_id: str) -> list[CacheEvent]:
        """A cache's events; for a cache evicted or expired, why it went."""
        if self._store is not None:
            with self._store.read() as db:
                if self._store.has_table(db, "removals") and not self._store.get_cache(
                    db, cache_id
                ):
                    removals = self._store.removals(db, cache_id)
                    if removals:
                        return removals
        self.get_image_cache(cache_id)
        assert self._store is not None
        return self._store.events(cache_id)

    def usage(self) -> Usage:
        quota = Quota()
        if self._store is not None:
            with self._store.read() as db:
                if self._store.has_table(db, "meta"):
                    quota = self._store.quota(db)
        return Usage.of(quota, self.list_image_caches())

    def match(self, spec: ContainerGroupSpec) -> MatchResult:
        """Which cache ``spec`` would use now, ranked with reasons (caches past their expiry
        are not candidates; nothing is deleted)."""
        index = CacheIndex(self.list_image_caches())
        return index.match(spec.images, self.region, spec.ephemeral_storage_gib)

    def gc(self, dry_run: bool = True, grace: timedelta = timedelta(minutes=10)) -> GcReport:
        """What ``eci-imagecache gc`` would delete now, found as that gc finds it: after the
        recovery a writer does as it opens (builds whose process has ended are failed, groups
        no record claims are removed, their layers no longer in use), and by the same code.
        A view deletes nothing: ``dry_run`` must be true."""
        if not dry_run:
            raise ValueError("a read-only view of the store only reports what gc would delete")
        nothing = GcReport(expired=[], failed=[], blobs_removed=0, bytes_freed=0, dry_run=True)
        if self._store is None or self._runtime is None:
            return nothing
        with self._store.read() as db:
            if not self._store.has_table(db, "caches"):
                return nothing
            recorded = {group.id for group in self._store.list_groups(db)}
        removed = self._runtime.unclaimed(lambda group_id: group_id in recorded)
        in_use = self._runtime.layers_in_use(excluding=removed)
        blobs = BlobStore(self.data_dir / "blobs", create=False)
        layers = LayerStore(self.data_dir / "layers", create=False)
        stored = on_disk(blobs, layers)
        with self._store.read() as db:
            to_delete = find_records_to_delete(
                self._store, db, self.clock(), stored, in_use, self._ended(db)
            )
        found = find_files_to_remove(
            blobs,
            layers,
            self.data_dir / "snapshots",
            self.data_dir / "groups",
            to_delete,
            time.time() - grace.total_seconds(),
            self._runtime.group_ids(),
            removed_groups=removed,
        )
        return found.report(to_delete, dry_run=True)

    # container groups ---------------------------------------------------------------------

    def _records(self, group_id: str | None = None) -> list[ContainerGroupRecord]:
        if self._store is None:
            return []
        with self._store.read() as db:
            if not self._store.has_table(db, "container_groups"):
                return []
            if group_id is None:
                return self._store.list_groups(db)
            record = self._store.get_group(db, group_id)
        return [record] if record else []

    def _seen(self, record: ContainerGroupRecord) -> ContainerGroupRecord:
        assert self._runtime is not None
        return observed(record, self._runtime.observe(record.id))

    def _unclaimed(self, state: GroupState) -> ContainerGroupRecord:
        """A group the runtime runs that no record claims (its creator was killed before
        recording it, or its deletion was interrupted): shown, with what recovery will do."""
        if state.owner_pid is not None and host.alive(state.owner_pid):
            why = f"being created by process {state.owner_pid}"
        else:
            runs = state.status in (PENDING, RUNNING)
            what = "stops and removes it" if runs else "removes what is left"
            why = (
                f"not recorded: process {state.owner_pid} that started it ended first"
                if state.owner_pid is not None
                else "no record claims it"
            ) + f"; {RECOVERY} {what}"
        record = ContainerGroupRecord(
            id=state.id,
            name=state.name,
            region=self.region,
            status=GroupStatus.PENDING,
            images=[],
            created_at=datetime.fromtimestamp(state.requested_at, UTC),
            ephemeral_storage_gib=BASE_EPHEMERAL_STORAGE_GIB,
        )
        record = observed(record, state)
        reason = f"{why}; {record.status_reason}" if record.status_reason else why
        return record.model_copy(update={"status_reason": reason})

    def list_container_groups(self) -> list[ContainerGroupRecord]:
        records = [self._seen(r) for r in self._records()]
        if self._runtime is None:
            return records
        claimed = {r.id for r in records}
        for group_id in self._runtime.group_ids():
            if group_id in claimed:
                continue
            state = self._runtime.observe(group_id)
            if state is not None:
                records.append(self._unclaimed(state))
        return sorted(records, key=lambda r: r.id)

    def get_container_group(self, group_id: str) -> ContainerGroupRecord:
        found = self._records(group_id)
        if found:
            return self._seen(found[0])
        state = self._runtime.observe(group_id) if self._runtime else None
        if state is None:
            raise NotFound(f"container group {group_id} not found")
        return self._unclaimed(state)

    def container_logs(self, group_id: str, container: str, tail: int | None = None) -> bytes:
        """A container's output (bounded: the most recent part is kept)."""
        check_container(self.get_container_group(group_id), container)
        assert self._runtime is not None
        try:
            return self._runtime.logs(group_id, container, tail)
        except StartError as err:
            raise NotFound(str(err)) from None
