"""The local backend: real image caches on this machine.

State is in SQLite (``store``); image content is in a store of unpacked layers (``ctx.layers``:
what containers run on; a layer unpacked as it downloads keeps no compressed copy) and a
content-addressed blob store (``blobs``: image configs, and blobs not unpacked); a cache's
snapshot is a file that pins each image to its manifest and blobs (``snapshots``).
The work is done by the parts this façade holds: the build pipeline (``build``), housekeeping
(``housekeeping``: quota, recovery, expiry, gc) and container groups (``groups``).

The engine decides (plans, matching, quotas, expiry); these modules do.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from pathlib import Path

from ...engine.lifecycle import expired, expiry_reason
from ...engine.matcher import MatchResult
from ...engine.models import (
    CacheEvent,
    CacheRecord,
    ContainerGroupRecord,
    ContainerGroupSpec,
    ImageCacheSpec,
    Quota,
)
from ...engine.planner import BuildPlan
from ...registry.client import RegistryClient
from ..base import GcReport, NotFound, Progress, StoreError, Usage
from .blobs import BlobStore
from .build import BuildPipeline
from .context import (
    LOCAL_REGION,
    Clock,
    Context,
    PhaseHook,
    RegistryFactory,
    default_data_dir,
    env_fetch_concurrency,
    env_fsync,
    utc_now,
)
from .groups import ContainerGroups
from .housekeeping import Housekeeping
from .snapshots import Snapshot, SnapshotFiles
from .store import Store

__all__ = ["GcReport", "LocalBackend", "Snapshot", "default_data_dir"]


class LocalBackend:
    def __init__(
        self,
        data_dir: Path | None = None,
        quota: Quota | None = None,
        clock: Clock = utc_now,
        region: str = LOCAL_REGION,
        registry_factory: RegistryFactory = RegistryClient,
        on_phase: PhaseHook | None = None,
        fetch_concurrency: int | None = None,
        fsync: bool | None = None,
    ) -> None:
        """``fetch_concurrency``: blobs a build fetches at once (``$ECI_IMAGECACHE_FETCH_
        CONCURRENCY``, default 4); ``fsync``: flush each blob and layer before it is named (see
        blobs)."""
        self.ctx = Context(
            data_dir=data_dir or default_data_dir(),
            clock=clock,
            region=region,
            registry_factory=registry_factory,
            on_phase=on_phase or (lambda phase, record: None),
            fetch_concurrency=max(1, fetch_concurrency)
            if fetch_concurrency
            else env_fetch_concurrency(),
            fsync=env_fsync() if fsync is None else fsync,
        )
        self.housekeeping = Housekeeping(self.ctx)
        self.build = BuildPipeline(self.ctx, self.housekeeping)
        self.groups = ContainerGroups(self.ctx, self.housekeeping, self.build)
        if quota is not None:
            self.set_quota(quota)
        with contextlib.suppress(StoreError):  # a full disk still opens for reading
            self.recover()

    # where things are (tests and the CLI look) ---------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.ctx.data_dir

    @property
    def region(self) -> str:
        return self.ctx.region

    @property
    def store(self) -> Store:
        return self.ctx.store

    @property
    def blobs(self) -> BlobStore:
        return self.ctx.blobs

    @property
    def snapshots(self) -> SnapshotFiles:
        return self.ctx.snapshots

    @property
    def groups_dir(self) -> Path:
        return self.ctx.groups_dir

    # housekeeping -------------------------------------------------------------------------

    @property
    def quota(self) -> Quota:
        return self.housekeeping.quota

    def set_quota(self, quota: Quota) -> None:
        self.housekeeping.set_quota(quota)

    def recover(self) -> list[str]:
        """Fail builds whose process died; stop containers no group record claims."""
        failed = self.housekeeping.recover()
        self.groups.reconcile()
        return failed

    def expire(self, dry_run: bool = False) -> list[str]:
        return self.housekeeping.expire(dry_run=dry_run)

    def gc(self, dry_run: bool = False, grace: timedelta = timedelta(minutes=10)) -> GcReport:
        return self.housekeeping.gc(dry_run=dry_run, grace=grace)

    def usage(self) -> Usage:
        return self.housekeeping.usage(self.list_image_caches())

    # image caches -------------------------------------------------------------------------

    def plan_image_cache(self, spec: ImageCacheSpec) -> BuildPlan:
        return self.build.plan(spec)

    def create_image_cache(
        self,
        spec: ImageCacheSpec,
        *,
        client_token: str | None = None,
        progress: Progress | None = None,
        wait: bool = True,
    ) -> CacheRecord:
        return self.build.create(spec, client_token, progress=progress, wait=wait)

    def update_image_cache(
        self, cache_id: str, spec: ImageCacheSpec, *, wait: bool = True
    ) -> CacheRecord:
        self.recover()
        return self.build.update(cache_id, spec, wait=wait)

    def _tidy(self) -> None:
        """Recovery of builds whose process died, before a read: skipped when the store
        cannot be written (a full disk), so that reads still answer."""
        with contextlib.suppress(StoreError):
            self.recover()

    def _expired(self, record: CacheRecord) -> bool:
        """Past its expiry: gone for every read, deleted by the next write (reads never
        delete)."""
        return expired(record, self.ctx.clock())

    def get_image_cache(self, cache_id: str) -> CacheRecord:
        self._tidy()
        record = self.ctx.get(cache_id)
        if self._expired(record):
            raise NotFound(f"image cache {cache_id} not found ({expiry_reason(record)})")
        return record

    def list_image_caches(self) -> list[CacheRecord]:
        self._tidy()
        with self.store.read() as db:
            return [c for c in self.store.list_caches(db) if not self._expired(c)]

    def events(self, cache_id: str) -> list[CacheEvent]:
        """A cache's events; for a cache evicted or expired, why it went."""
        with self.store.read() as db:
            exists = self.store.get_cache(db, cache_id) is not None
            removals = [] if exists else self.store.removals(db, cache_id)
        if removals:
            return removals
        self.get_image_cache(cache_id)
        return self.store.events(cache_id)

    def delete_image_cache(self, cache_id: str) -> None:
        with self.store.transaction() as db:
            self.ctx.delete_cache(db, cache_id)

    # matching and container groups --------------------------------------------------------

    def match(self, spec: ContainerGroupSpec) -> MatchResult:
        """Which cache ``spec`` would use now, ranked with reasons. Expired caches are deleted
        first (when the store can be written) so that the index never ranks one."""
        self._tidy()
        with contextlib.suppress(StoreError):
            self.expire()
        return self.groups.match(spec)

    def create_container_group(
        self, spec: ContainerGroupSpec, *, client_token: str | None = None
    ) -> ContainerGroupRecord:
        self.recover()
        self.expire()
        return self.groups.create(spec, client_token)

    def get_container_group(self, group_id: str) -> ContainerGroupRecord:
        return self.groups.get(group_id)

    def list_container_groups(self) -> list[ContainerGroupRecord]:
        return self.groups.list()

    def container_logs(self, group_id: str, container: str, tail: int | None = None) -> bytes:
        """A container's output (bounded: the most recent part is kept)."""
        return self.groups.logs(group_id, container, tail)

    def delete_container_group(self, group_id: str) -> None:
        """Stop the containers (SIGTERM, then SIGKILL after the grace period), unmount, and
        remove the group's directories and record."""
        self.groups.delete(group_id)
