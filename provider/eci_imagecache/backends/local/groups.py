"""Container groups: choose the cache a group uses (explicit, matched, or none), prepare its
images from that cache or the registry into ``groups/<id>/images``, record the group, and create
an automatic cache from what it pulled when it matched none.

``prepare`` lays the images out; running containers on them is a separate step after it.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ...engine.lifecycle import auto_cache_name, auto_cache_size_gib
from ...engine.matcher import CacheIndex, MatchResult, score
from ...engine.models import (
    CacheKind,
    CacheRecord,
    CacheSelection,
    CacheStatus,
    ContainerGroupRecord,
    ContainerGroupSpec,
    EvictionStrategy,
    GroupStatus,
    SnapshotKind,
)
from ...engine.planner import ResolvedImage
from ...registry.client import RegistryError as ClientRegistryError
from ..base import InvalidSpec, NotFound, QuotaExceeded, from_registry
from .context import Context
from .housekeeping import Housekeeping
from .ids import GROUP_ID, new_id
from .snapshots import Snapshot


@dataclass
class Prepared:
    """A group's images laid out on disk, and where their bytes came from."""

    images: list[ResolvedImage] = field(default_factory=list)
    layers: dict[str, int] = field(default_factory=dict)
    fetched: int = 0
    from_cache: int = 0
    seconds: float = 0.0


class ContainerGroups:
    def __init__(self, ctx: Context, housekeeping: Housekeeping) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.housekeeping = housekeeping
        self._lock = threading.Lock()
        self._index = CacheIndex()
        self._index_version = -1

    def workdir(self, group_id: str) -> Path:
        return self.ctx.groups_dir / group_id

    # matching -----------------------------------------------------------------------------

    def match(self, spec: ContainerGroupSpec) -> MatchResult:
        """Which cache ``spec`` would use now, ranked with reasons (no housekeeping).

        The index is kept in this process and brought up to date with only the caches changed
        since it was last read (by any process), so a match costs the same with ten caches in
        the store or ten thousand."""
        with self._lock:
            with self.store.read() as db:
                version = self.store.caches_version(db)
                if self._index_version < 0:
                    self._index = CacheIndex(self.store.list_caches(db))
                elif version != self._index_version:
                    changed, deleted = self.store.cache_changes_since(db, self._index_version)
                    for cache_id in deleted:
                        self._index.remove(cache_id)
                    for record in changed:
                        self._index.add(record)
                self._index_version = version
            # Matched under the lock: the index changes in place.
            return self._index.match(spec.images, self.ctx.region, spec.ephemeral_storage_gib)

    def _select_cache(self, spec: ContainerGroupSpec) -> tuple[CacheRecord | None, str, str]:
        if spec.cache == CacheSelection.NONE:
            return None, "none", "cache use disabled"
        if spec.cache == CacheSelection.EXPLICIT:
            try:
                cache = self.ctx.get(spec.cache_id or "")
            except NotFound:
                raise InvalidSpec(f"cache_id: image cache {spec.cache_id} does not exist") from None
            if not cache.usable:
                raise InvalidSpec(
                    f"cache_id: image cache {cache.id} is not usable "
                    f"({cache.status.value}{': ' + cache.failure if cache.failure else ''})"
                )
            exact, same = score(cache.images, spec.images)
            label = "exact" if exact == len(spec.images) else "partial" if exact + same else "none"
            return cache, label, f"specified explicitly; {exact}/{len(spec.images)} images exact"
        result = self.match(spec)
        best = result.chosen
        if best is None:
            return None, "none", result.explain()
        return self.ctx.get(best.cache_id), best.degree.label, best.reason

    # preparing images ---------------------------------------------------------------------

    def prepare(
        self, group_id: str, spec: ContainerGroupSpec, cache: CacheRecord | None
    ) -> Prepared:
        """Lay out each image's blobs under the group's directory: from the cache where it
        holds them (and the pull policy allows), else fetched from the registry."""
        ctx = self.ctx
        started = time.perf_counter()
        prepared = Prepared()
        workdir = self.workdir(group_id)
        snapshot = ctx.snapshots.read(cache.snapshot_id) if cache else None
        with self.store.read() as db:
            held = self.store.cache_layers(db, cache.id) if cache else {}
        try:
            with ctx.registry(
                spec.credentials, spec.plain_http_registries, spec.insecure_registries
            ) as client:
                for n, ref in enumerate(spec.images):
                    from_snapshot = snapshot.find(ref) if snapshot else None
                    cached = spec.pull_policy(ref) == "IfNotPresent"
                    image = from_snapshot if from_snapshot and cached else client.resolve(ref)
                    prepared.images.append(image)
                    for blob in image.blobs:
                        target = workdir / "images" / str(n) / blob.digest.replace(":", "-")
                        if cached and blob.digest in held and ctx.blobs.has(blob.digest):
                            prepared.from_cache += blob.size
                        else:
                            ctx.blobs.write(
                                blob.digest, lambda out, b=blob, r=ref: client.fetch_blob(r, b, out)
                            )
                            prepared.fetched += blob.size
                        ctx.blobs.link_into(blob.digest, target)
                        prepared.layers[blob.digest] = blob.size
        except ClientRegistryError as err:
            shutil.rmtree(workdir, ignore_errors=True)
            raise from_registry(f"container group {spec.name}", err) from None
        prepared.seconds = time.perf_counter() - started
        return prepared

    # groups -------------------------------------------------------------------------------

    def create(self, spec: ContainerGroupSpec) -> ContainerGroupRecord:
        group_id = new_id("eci")
        cache, degree, reason = self._select_cache(spec)
        prepared = self.prepare(group_id, spec, cache)
        now = self.ctx.clock()
        auto_snapshot = None
        if cache is None and spec.cache == CacheSelection.AUTO_CREATE:
            auto_snapshot = self.ctx.snapshots.take(
                self.ctx.blobs, new_id("imc"), prepared.images, prepared.layers
            )
        record = ContainerGroupRecord(
            id=group_id,
            name=spec.name,
            region=self.ctx.region,
            status=GroupStatus.RUNNING,
            images=spec.images,
            created_at=now,
            ephemeral_storage_gib=spec.ephemeral_storage_gib,
            cache_id=cache.id if cache else None,
            cache_name=cache.name if cache else None,
            match_degree=degree,
            match_reason=reason,
            bytes_fetched=prepared.fetched,
            bytes_from_cache=prepared.from_cache,
            preparation_seconds=round(prepared.seconds, 6),
        )
        with self.store.transaction() as db:
            if cache is not None:
                current = self.store.get_cache(db, cache.id)
                if current is not None:
                    self.store.put_cache(db, current.model_copy(update={"last_used_at": now}))
            elif auto_snapshot is not None:
                try:
                    auto = self._auto_cache(db, group_id, spec, auto_snapshot, prepared, now)
                except QuotaExceeded as err:
                    self.ctx.snapshots.remove(auto_snapshot.id)
                    record = record.model_copy(
                        update={"match_reason": f"no matching cache; not created: {err}"}
                    )
                    self.store.put_group(db, record)
                    return record
                record = record.model_copy(
                    update={
                        "auto_created_cache_id": auto.id,
                        "match_reason": f"no matching cache; created {auto.name} ({auto.id})",
                    }
                )
            self.store.put_group(db, record)
        return record

    def _auto_cache(
        self,
        db: sqlite3.Connection,
        group_id: str,
        spec: ContainerGroupSpec,
        snapshot: Snapshot,
        prepared: Prepared,
        now: datetime,
    ) -> CacheRecord:
        """ECI's automatic creation: a cache of the group's images, from what it pulled."""
        self.housekeeping.make_room(db, CacheKind.AUTO)
        cache_id = snapshot.cache_id
        record = CacheRecord(
            id=cache_id,
            name=auto_cache_name(group_id),
            kind=CacheKind.AUTO,
            region=self.ctx.region,
            images=spec.images,
            size_gib=auto_cache_size_gib(spec.extra_ephemeral_storage_gib),
            status=CacheStatus.READY,
            snapshot=SnapshotKind.STANDARD,
            eviction=EvictionStrategy.LRU,
            created_at=now,
            progress=100,
            snapshot_id=snapshot.id,
            layer_count=len(prepared.layers),
            content_bytes=sum(prepared.layers.values()),
        )
        self.store.put_cache(db, record)
        self.store.set_layers(db, cache_id, prepared.layers)
        self.ctx.event(
            db, cache_id, "Created", f"created automatically for container group {group_id}"
        )
        return record

    def get(self, group_id: str) -> ContainerGroupRecord:
        with self.store.read() as db:
            record = self.store.get_group(db, group_id)
        if record is None:
            raise NotFound(f"container group {group_id} not found")
        return record

    def list(self) -> list[ContainerGroupRecord]:
        with self.store.read() as db:
            return self.store.list_groups(db)

    def delete(self, group_id: str) -> None:
        with self.store.transaction() as db:
            known = self.store.get_group(db, group_id) is not None
            self.store.delete_group(db, group_id)
        # Only a directory this backend made: an id from outside never becomes a path.
        if known and GROUP_ID.fullmatch(group_id):
            shutil.rmtree(self.workdir(group_id), ignore_errors=True)
