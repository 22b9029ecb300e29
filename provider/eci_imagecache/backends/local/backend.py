"""The local backend: real image caches on this machine.

State is in SQLite (``store.Store``), image content in a content-addressed blob store
(``blobs.BlobStore``), and a cache's snapshot is a file that pins each image to its manifest and
blobs. Builds pull from real registries with ``registry.RegistryClient``; container groups prepare
their images from the cache they match, or from the registry when it does not hold them.

The engine decides (plans, matching, quotas, expiry); this module does.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from platformdirs import user_data_dir
from pydantic import BaseModel

from ...engine.diff import ChangeKind, diff_cache
from ...engine.lifecycle import (
    QuotaExceeded,
    auto_cache_name,
    auto_cache_size_gib,
    due_for_deletion,
    make_room,
)
from ...engine.matcher import CacheIndex, MatchResult, score
from ...engine.models import (
    CacheEvent,
    CacheKind,
    CacheRecord,
    CacheSelection,
    CacheStatus,
    ContainerGroupRecord,
    ContainerGroupSpec,
    EvictionStrategy,
    GroupStatus,
    ImageCacheSpec,
    Quota,
    RegistryCredential,
    SnapshotKind,
)
from ...engine.planner import BuildPlan, PlanError, ResolvedImage, plan_build
from ...engine.refs import ImageRef
from ...registry.client import Credentials, RegistryClient, RegistryError
from ..base import BackendError, NotFound, Usage
from .blobs import BlobStore, UnsafeDigest
from .store import Store

Clock = Callable[[], datetime]
LOCAL_REGION = "local"
RegistryFactory = Callable[..., RegistryClient]
# Caches this process is building right now (any LocalBackend object): never "interrupted".
_ACTIVE_BUILDS: set[str] = set()


def default_data_dir() -> Path:
    """``$ECI_IMAGECACHE_HOME`` or the per-user data directory."""
    return Path(os.environ.get("ECI_IMAGECACHE_HOME") or user_data_dir("eci-imagecache"))


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(10)}"


_GROUP_ID = re.compile(r"eci-[0-9a-f]{20}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class GcReport(BaseModel):
    expired: list[str]  # "id (reason)"
    failed: list[str]  # "id (failure)"
    blobs_removed: int
    bytes_freed: int
    dry_run: bool


class Snapshot(BaseModel):
    """What a cache holds: each image pinned to its manifest and blobs."""

    id: str
    cache_id: str
    images: list[ResolvedImage]

    def find(self, ref: ImageRef) -> ResolvedImage | None:
        """The held image with the same repository and version (tag or digest)."""
        for image in self.images:
            held = ImageRef.parse(image.reference)
            if held.repository_key != ref.repository_key:
                continue
            if (ref.digest and ref.digest in (held.digest, image.manifest_digest)) or (
                not ref.digest and ref.tag == held.tag
            ):
                return image
        return None


class LocalBackend:
    def __init__(
        self,
        data_dir: Path | None = None,
        quota: Quota | None = None,
        clock: Clock = utc_now,
        region: str = LOCAL_REGION,
        registry_factory: RegistryFactory = RegistryClient,
        on_phase: Callable[[str, CacheRecord], None] | None = None,
    ) -> None:
        self.data_dir = data_dir or default_data_dir()
        self.store = Store(self.data_dir / "state.db")
        self.blobs = BlobStore(self.data_dir / "blobs")
        self.snapshots = self.data_dir / "snapshots"
        self.groups_dir = self.data_dir / "groups"
        self.snapshots.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.region = region
        self.registry_factory = registry_factory
        self.on_phase = on_phase or (lambda phase, record: None)
        self._host = socket.gethostname()
        self._lock = threading.Lock()
        self._index = CacheIndex()
        self._index_version = -1
        if quota is not None:
            self.set_quota(quota)
        self.recover()

    # housekeeping -------------------------------------------------------------------------

    @property
    def quota(self) -> Quota:
        with self.store.read() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'quota'").fetchone()
        return Quota.model_validate_json(row[0]) if row else Quota()

    def set_quota(self, quota: Quota) -> None:
        with self.store.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('quota', ?)",
                (quota.model_dump_json(),),
            )

    def _event(
        self, db: Any, cache_id: str, reason: str, message: str, kind: str = "Normal"
    ) -> None:
        event = CacheEvent(at=self.clock(), kind=kind, reason=reason, message=message)
        self.store.add_event(db, cache_id, event)

    def recover(self) -> list[str]:
        """Fail builds whose process died (so they are never matched) and drop their temp files."""
        failed = []
        with self.store.read() as db:
            builds = self.store.builds(db)
        if not any(
            host == self._host and cache_id not in _ACTIVE_BUILDS for cache_id, host, _ in builds
        ):
            self.blobs.remove_stale_temp_files(_pid_alive)
            return failed
        with self.store.transaction() as db:
            for cache_id, host, pid in self.store.builds(db):
                if host != self._host or cache_id in _ACTIVE_BUILDS:
                    continue
                if pid == os.getpid() or not _pid_alive(pid):
                    record = self.store.get_cache(db, cache_id)
                    self.store.end_build(db, cache_id)
                    if record is None or record.status not in (
                        CacheStatus.CREATING,
                        CacheStatus.UPDATING,
                    ):
                        continue
                    reason = f"build interrupted: process {pid} ended before it finished"
                    self._fail(db, record, reason)
                    failed.append(cache_id)
        self.blobs.remove_stale_temp_files(_pid_alive)
        return failed

    def _fail(self, db: Any, record: CacheRecord, reason: str) -> CacheRecord:
        # A failed rebuild keeps the snapshot it had; a failed first build has none usable.
        keeps_snapshot = record.status == CacheStatus.UPDATING
        record = record.model_copy(
            update={
                "status": CacheStatus.READY if keeps_snapshot else CacheStatus.FAILED,
                "snapshot": record.snapshot if keeps_snapshot else SnapshotKind.NONE,
                "failure": reason,
            }
        )
        self.store.put_cache(db, record)
        self._event(db, record.id, "BuildFailed", reason, kind="Warning")
        return record

    def _make_room(self, db: Any, kind: CacheKind) -> list[CacheRecord]:
        """The engine's choice of caches to evict; records are read only when at the quota."""
        quota = self.quota
        if self.store.count_caches(db, kind) < quota.limit(kind):
            return []
        return make_room(self.store.caches_of_kind(db, kind), kind, quota)

    def expire(self, dry_run: bool = False) -> list[str]:
        """Delete caches whose retention or automatic expiry has passed."""
        now = self.clock()
        with self.store.read() as db:
            if not self.store.due_caches(db, now):
                return []
        with self.store.transaction() as db:
            due = due_for_deletion(self.store.due_caches(db, now), now)
            if not dry_run:
                for expiry in due:
                    self._delete_cache(db, expiry.cache_id)
        return [f"{e.cache_id} ({e.reason})" for e in due]

    def gc(self, dry_run: bool = False, grace: timedelta = timedelta(minutes=10)) -> GcReport:
        """Apply expiry now, delete failed caches (never usable), and remove blobs no cache
        references any more. Blobs younger than ``grace`` stay: a build or a container group
        may have fetched them and not recorded them yet."""
        expired = self.expire(dry_run=dry_run)
        with self.store.transaction() as db:
            failed = [c for c in self.store.list_caches(db) if c.status == CacheStatus.FAILED]
            if not dry_run:
                for cache in failed:
                    self._delete_cache(db, cache.id)
            referenced = self.store.referenced_digests(db)
        cutoff = time.time() - grace.total_seconds()
        orphans = [
            d
            for d in self.blobs.digests()
            if d not in referenced and self.blobs.path(d).stat().st_mtime <= cutoff
        ]
        freed = sum(self.blobs.path(d).stat().st_size for d in orphans)
        if not dry_run:
            for digest in orphans:
                self.blobs.remove(digest)
        return GcReport(
            expired=expired,
            failed=[f"{c.id} ({c.failure})" for c in failed],
            blobs_removed=len(orphans),
            bytes_freed=freed,
            dry_run=dry_run,
        )

    def usage(self) -> Usage:
        caches = self.list_image_caches()
        return Usage(
            quota=self.quota,
            manual=sum(c.kind == CacheKind.MANUAL for c in caches),
            auto=sum(c.kind == CacheKind.AUTO for c in caches),
        )

    # registry -----------------------------------------------------------------------------

    def _registry(
        self, credentials: list[RegistryCredential], plain_http: list[str], insecure: list[str]
    ) -> RegistryClient:
        return self.registry_factory(
            credentials={c.server: Credentials(c.username, c.password) for c in credentials},
            plain_http=set(plain_http),
            insecure=set(insecure),
        )

    def _resolve(self, client: RegistryClient, images: list[ImageRef]) -> list[ResolvedImage]:
        resolved = []
        for ref in images:
            image = client.resolve(ref)
            for blob in image.blobs:
                try:
                    self.blobs.path(blob.digest)
                except UnsafeDigest as err:
                    raise RegistryError(f"image {ref}: {err}") from None
            resolved.append(image)
        return resolved

    # image caches -------------------------------------------------------------------------

    def plan_image_cache(self, spec: ImageCacheSpec) -> BuildPlan:
        """What building ``spec`` would fetch and reuse now; nothing is written."""
        with self._registry(
            spec.credentials, spec.plain_http_registries, spec.insecure_registries
        ) as client:
            images = self._resolve(client, spec.images)
        return self._plan(images, spec)

    def _plan(self, images: list[ResolvedImage], spec: ImageCacheSpec) -> BuildPlan:
        with self.store.read() as db:
            held = {d for d in self.store.referenced_digests(db) if self.blobs.has(d)}
        return plan_build(images, spec.size_gib, held, spec.layer_reuse)

    def create_image_cache(
        self,
        spec: ImageCacheSpec,
        progress: Callable[[int, int], None] | None = None,
        wait: bool = True,
    ) -> CacheRecord:
        """Plan, claim quota, build. Errors before the claim leave nothing behind; errors after
        it leave the cache Failed with the reason (never usable). With ``wait=False`` the build
        goes on in a background thread and the Creating record returns at once (as the API
        does)."""
        self.expire()
        with self._registry(
            spec.credentials, spec.plain_http_registries, spec.insecure_registries
        ) as client:
            try:
                images = self._resolve(client, spec.images)
                plan = self._plan(images, spec)
            except (RegistryError, PlanError) as err:
                raise BackendError(f"image cache {spec.name}: {err}") from None
            record = CacheRecord(
                id=new_id("imc"),
                name=spec.name,
                kind=CacheKind.MANUAL,
                region=self.region,
                images=spec.images,
                size_gib=spec.size_gib,
                status=CacheStatus.CREATING,
                eviction=spec.eviction,
                retention_days=spec.retention_days,
                created_at=self.clock(),
                instant=spec.instant,
                layer_reuse=spec.layer_reuse,
                credential_servers=[c.server for c in spec.credentials],
                plan=plan.summary(),
            )
            with self.store.transaction() as db:
                # A failed earlier attempt at the same cache (a create that errored, which
                # Pulumi does not keep in state) gives way to this one instead of piling up.
                retried = [
                    c
                    for c in self.store.caches_named(db, spec.name)
                    if c.status == CacheStatus.FAILED and c.kind == CacheKind.MANUAL
                ]
                for failed in retried:
                    self._delete_cache(db, failed.id)
                try:
                    victims = self._make_room(db, CacheKind.MANUAL)
                except QuotaExceeded as err:
                    raise BackendError(f"image cache {spec.name}: {err}") from None
                for victim in victims:
                    self._delete_cache(db, victim.id)
                self.store.put_cache(db, record)
                self._event(
                    db,
                    record.id,
                    "Created",
                    f"image cache {spec.name} created"
                    + "".join(f"; replaces failed {c.id}" for c in retried)
                    + "".join(f"; evicted {v.name} ({v.id}, LRU)" for v in victims),
                )
            return self._finish(record, plan, client, progress, wait)

    def _finish(
        self,
        record: CacheRecord,
        plan: BuildPlan,
        client: RegistryClient,
        progress: Callable[[int, int], None] | None,
        wait: bool,
        final: dict[str, Any] | None = None,
    ) -> CacheRecord:
        if wait:
            return self._build(record, plan, client, progress, final)
        _ACTIVE_BUILDS.add(record.id)

        def build() -> None:
            with contextlib.suppress(BackendError):
                self._build(record, plan, client, progress, final)

        threading.Thread(target=build, name=f"build-{record.id}", daemon=True).start()
        return record

    def _build(
        self,
        record: CacheRecord,
        plan: BuildPlan,
        client: RegistryClient,
        progress: Callable[[int, int], None] | None = None,
        final: dict[str, Any] | None = None,
    ) -> CacheRecord:
        _ACTIVE_BUILDS.add(record.id)  # before the builds row exists: never seen as dead
        with self.store.transaction() as db:
            self.store.start_build(db, record.id, self._host, os.getpid())
            self._event(db, record.id, "Building", plan.summary())
        _ACTIVE_BUILDS.add(record.id)
        try:
            return self._run_build(
                record, plan, client, progress or (lambda done, total: None), final or {}
            )
        except Exception as err:  # every failure ends in a Failed record, then re-raises
            reason = str(err) if isinstance(err, RegistryError | BackendError) else repr(err)
            with self.store.transaction() as db:
                current = self.store.get_cache(db, record.id)
                if current is not None:
                    self._fail(db, current, reason)
                self.store.end_build(db, record.id)
            raise BackendError(
                f"image cache {record.name} ({record.id}) failed: {reason}"
            ) from None
        finally:
            _ACTIVE_BUILDS.discard(record.id)

    def _run_build(
        self,
        record: CacheRecord,
        plan: BuildPlan,
        client: RegistryClient,
        progress: Callable[[int, int], None],
        final: dict[str, Any],
    ) -> CacheRecord:
        """Fetch, snapshot, then commit everything at once. A rebuild keeps serving the old
        images, layers and snapshot until that commit; ``final`` holds the new images/size."""
        refs = {image.reference: ImageRef.parse(image.reference) for image in plan.images}
        owner = {
            blob.digest: refs[image.reference] for image in plan.images for blob in image.blobs
        }
        total = max(1, plan.fetch_bytes)
        done = 0
        last_report = time.monotonic()
        for blob in plan.fetch:
            self.blobs.write(
                blob.digest, lambda out, blob=blob: client.fetch_blob(owner[blob.digest], blob, out)
            )
            done += blob.size
            progress(done, plan.fetch_bytes)
            if time.monotonic() - last_report > 0.5 or done == total:
                self._update(record.id, progress=min(90, 90 * done // total))
                last_report = time.monotonic()
        layers = {blob.digest: blob.size for image in plan.images for blob in image.blobs}
        if record.instant and record.status == CacheStatus.CREATING:
            # First build of an instant cache: usable now, from the blobs on local disk.
            with self.store.transaction() as db:
                self.store.set_layers(db, record.id, layers)
            record = self._update(
                record.id,
                snapshot=SnapshotKind.LOCAL,
                progress=90,
                event=("LocalSnapshotReady", "instant cache usable from a local snapshot"),
            )
            self.on_phase("local-snapshot", record)
        snapshot = self._standard_snapshot(record.id, plan.images, layers)
        with self.store.transaction() as db:
            current = self.store.get_cache(db, record.id)
            if current is None:
                raise BackendError(f"image cache {record.id} was deleted while building")
            previous_snapshot = current.snapshot_id
            record = current.model_copy(
                update={
                    **final,
                    "status": CacheStatus.READY,
                    "snapshot": SnapshotKind.STANDARD,
                    "progress": 100,
                    "snapshot_id": snapshot.id,
                    "layer_count": len(layers),
                    "content_bytes": plan.content_bytes,
                    "fetched_bytes": plan.fetch_bytes,
                    "reused_bytes": plan.reuse_bytes,
                    "failure": None,
                    "plan": plan.summary(),
                }
            )
            self.store.put_cache(db, record)
            self.store.set_layers(db, record.id, layers)
            self.store.end_build(db, record.id)
            released = "; local snapshot released" if current.snapshot == SnapshotKind.LOCAL else ""
            self._event(db, record.id, "Ready", f"standard snapshot {snapshot.id} ready{released}")
        if previous_snapshot and previous_snapshot != snapshot.id:
            (self.snapshots / f"{previous_snapshot}.json").unlink(missing_ok=True)
        self.on_phase("ready", record)
        return record

    def _standard_snapshot(
        self, cache_id: str, images: list[ResolvedImage], layers: dict[str, int]
    ) -> Snapshot:
        """Check that every blob is in the store at its size, then write the snapshot file.
        Digests were verified as the blobs arrived, and stored blobs are read-only, so this
        costs a stat per blob, not a read of the content."""
        for digest, size in layers.items():
            path = self.blobs.path(digest)
            if not path.is_file() or path.stat().st_size != size:
                raise BackendError(f"blob {digest[:19]} is missing or damaged in the store")
        snapshot = Snapshot(id=new_id("snap"), cache_id=cache_id, images=images)
        temp = self.snapshots / f".{snapshot.id}.tmp"
        temp.write_text(snapshot.model_dump_json())
        os.replace(temp, self.snapshots / f"{snapshot.id}.json")
        return snapshot

    def _update(
        self, cache_id: str, event: tuple[str, str] | None = None, **fields: Any
    ) -> CacheRecord:
        with self.store.transaction() as db:
            record = self.store.get_cache(db, cache_id)
            if record is None:
                raise BackendError(f"image cache {cache_id} was deleted while building")
            record = record.model_copy(update=fields)
            self.store.put_cache(db, record)
            if event:
                self._event(db, cache_id, *event)
        return record

    def _snapshot(self, record: CacheRecord) -> Snapshot | None:
        if not record.snapshot_id:
            return None
        path = self.snapshots / f"{record.snapshot_id}.json"
        return Snapshot.model_validate_json(path.read_text()) if path.exists() else None

    def get_image_cache(self, cache_id: str) -> CacheRecord:
        self.recover()
        with self.store.read() as db:
            record = self.store.get_cache(db, cache_id)
        if record is None:
            raise NotFound(f"image cache {cache_id} not found")
        return record

    def list_image_caches(self) -> list[CacheRecord]:
        self.recover()
        self.expire()
        with self.store.read() as db:
            return self.store.list_caches(db)

    def events(self, cache_id: str) -> list[CacheEvent]:
        self.get_image_cache(cache_id)
        return self.store.events(cache_id)

    def update_image_cache(
        self, cache_id: str, spec: ImageCacheSpec, wait: bool = True
    ) -> CacheRecord:
        """Update in place; a change of images or size rebuilds while the old snapshot serves."""
        current = self.get_image_cache(cache_id)
        before = {"images": [str(i) for i in current.images], "size_gib": current.size_gib}
        after = {"images": [str(i) for i in spec.images], "size_gib": spec.size_gib}
        rebuild = (
            diff_cache(before, after).kind >= ChangeKind.REBUILD
            or current.status == CacheStatus.FAILED
        )
        settings = {
            "name": spec.name,
            "eviction": spec.eviction,
            "retention_days": spec.retention_days,
            "instant": spec.instant,
            "layer_reuse": spec.layer_reuse,
            "credential_servers": [c.server for c in spec.credentials],
        }
        if not rebuild:
            return self._update(
                cache_id, event=("Updated", f"settings of {spec.name} updated"), **settings
            )
        with self._registry(
            spec.credentials, spec.plain_http_registries, spec.insecure_registries
        ) as client:
            try:
                plan = self._plan(self._resolve(client, spec.images), spec)
            except (RegistryError, PlanError) as err:
                raise BackendError(f"image cache {spec.name}: {err}") from None
            content = {"images": spec.images, "size_gib": spec.size_gib}
            with self.store.transaction() as db:
                if any(row[0] == cache_id for row in self.store.builds(db)):
                    raise BackendError(
                        f"image cache {spec.name} ({cache_id}) is being built; "
                        "update it again once the build has ended"
                    )
                now = self.store.get_cache(db, cache_id) or current
                if now.usable:
                    # The old snapshot serves until the new one is committed.
                    record = now.model_copy(
                        update={**settings, "status": CacheStatus.UPDATING, "progress": 0}
                    )
                else:
                    record = now.model_copy(
                        update={
                            **settings,
                            **content,
                            "progress": 0,
                            "status": CacheStatus.CREATING,
                            "snapshot": SnapshotKind.NONE,
                        }
                    )
                self.store.put_cache(db, record)
                self._event(db, cache_id, "Rebuilding", plan.summary())
            return self._finish(record, plan, client, None, wait, final=content)

    def delete_image_cache(self, cache_id: str) -> None:
        with self.store.transaction() as db:
            self._delete_cache(db, cache_id)

    def _delete_cache(self, db: Any, cache_id: str) -> None:
        record = self.store.get_cache(db, cache_id)
        self.store.delete_cache(db, cache_id)
        if record is not None and record.snapshot_id:
            snapshot = self.snapshots / f"{record.snapshot_id}.json"
            self.store.after_commit(lambda: snapshot.unlink(missing_ok=True))

    # matching -----------------------------------------------------------------------------

    def _current_index(self) -> CacheIndex:
        with self._lock:
            with self.store.read() as db:
                version = self.store.caches_version(db)
                if version != self._index_version:
                    self._index = CacheIndex(self.store.list_caches(db))
                    self._index_version = version
            return self._index

    def match(self, spec: ContainerGroupSpec) -> MatchResult:
        """Which cache ``spec`` would use now, ranked with reasons."""
        self.recover()
        self.expire()
        return self._current_index().match(spec.images, self.region, spec.ephemeral_storage_gib)

    # container groups ---------------------------------------------------------------------

    def create_container_group(self, spec: ContainerGroupSpec) -> ContainerGroupRecord:
        group_id = new_id("eci")
        cache, degree, reason = self._select_cache(spec)
        started = time.perf_counter()
        fetched = from_cache = 0
        workdir = self.groups_dir / group_id
        used: dict[str, int] = {}
        resolved: list[ResolvedImage] = []
        snapshot = self._snapshot(cache) if cache else None
        with self.store.read() as db:
            held = self.store.cache_layers(db, cache.id) if cache else {}
        try:
            with self._registry(
                spec.credentials, spec.plain_http_registries, spec.insecure_registries
            ) as client:
                for n, ref in enumerate(spec.images):
                    from_snapshot = snapshot.find(ref) if snapshot else None
                    cached = spec.pull_policy(ref) == "IfNotPresent"
                    image = from_snapshot if from_snapshot and cached else client.resolve(ref)
                    resolved.append(image)
                    for blob in image.blobs:
                        target = workdir / "images" / str(n) / blob.digest.replace(":", "-")
                        if cached and blob.digest in held and self.blobs.has(blob.digest):
                            from_cache += blob.size
                        else:
                            self.blobs.write(
                                blob.digest, lambda out, b=blob, r=ref: client.fetch_blob(r, b, out)
                            )
                            fetched += blob.size
                        self.blobs.link_into(blob.digest, target)
                        used[blob.digest] = blob.size
        except RegistryError as err:
            shutil.rmtree(workdir, ignore_errors=True)
            raise BackendError(f"container group {spec.name}: {err}") from None
        seconds = time.perf_counter() - started
        now = self.clock()
        auto_snapshot = None
        if cache is None and spec.cache == CacheSelection.AUTO_CREATE:
            auto_snapshot = self._standard_snapshot(new_id("imc"), resolved, used)
        record = ContainerGroupRecord(
            id=group_id,
            name=spec.name,
            region=self.region,
            status=GroupStatus.RUNNING,
            images=spec.images,
            created_at=now,
            ephemeral_storage_gib=spec.ephemeral_storage_gib,
            cache_id=cache.id if cache else None,
            cache_name=cache.name if cache else None,
            match_degree=degree,
            match_reason=reason,
            bytes_fetched=fetched,
            bytes_from_cache=from_cache,
            preparation_seconds=round(seconds, 6),
        )
        with self.store.transaction() as db:
            if cache is not None:
                current = self.store.get_cache(db, cache.id)
                if current is not None:
                    self.store.put_cache(db, current.model_copy(update={"last_used_at": now}))
            elif auto_snapshot is not None:
                try:
                    auto = self._auto_cache(db, group_id, spec, auto_snapshot, used, now)
                except QuotaExceeded as err:
                    (self.snapshots / f"{auto_snapshot.id}.json").unlink(missing_ok=True)
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

    def _select_cache(self, spec: ContainerGroupSpec) -> tuple[CacheRecord | None, str, str]:
        if spec.cache == CacheSelection.NONE:
            return None, "none", "cache use disabled"
        if spec.cache == CacheSelection.EXPLICIT:
            try:
                cache = self.get_image_cache(spec.cache_id or "")
            except NotFound:
                raise BackendError(
                    f"cache_id: image cache {spec.cache_id} does not exist"
                ) from None
            if not cache.usable:
                raise BackendError(
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
        return self.get_image_cache(best.cache_id), best.degree.label, best.reason

    def _auto_cache(
        self,
        db: Any,
        group_id: str,
        spec: ContainerGroupSpec,
        snapshot: Snapshot,
        layers: dict[str, int],
        now: datetime,
    ) -> CacheRecord:
        """ECI's automatic creation: a cache of the group's images, from what it pulled."""
        for victim in self._make_room(db, CacheKind.AUTO):
            self._delete_cache(db, victim.id)
        cache_id = snapshot.cache_id
        record = CacheRecord(
            id=cache_id,
            name=auto_cache_name(group_id),
            kind=CacheKind.AUTO,
            region=self.region,
            images=spec.images,
            size_gib=auto_cache_size_gib(spec.extra_ephemeral_storage_gib),
            status=CacheStatus.READY,
            snapshot=SnapshotKind.STANDARD,
            eviction=EvictionStrategy.LRU,
            created_at=now,
            progress=100,
            snapshot_id=snapshot.id,
            layer_count=len(layers),
            content_bytes=sum(layers.values()),
        )
        self.store.put_cache(db, record)
        self.store.set_layers(db, cache_id, layers)
        self._event(
            db, cache_id, "Created", f"created automatically for container group {group_id}"
        )
        return record

    def get_container_group(self, group_id: str) -> ContainerGroupRecord:
        with self.store.read() as db:
            record = self.store.get_group(db, group_id)
        if record is None:
            raise NotFound(f"container group {group_id} not found")
        return record

    def list_container_groups(self) -> list[ContainerGroupRecord]:
        with self.store.read() as db:
            return self.store.list_groups(db)

    def delete_container_group(self, group_id: str) -> None:
        with self.store.transaction() as db:
            known = self.store.get_group(db, group_id) is not None
            self.store.delete_group(db, group_id)
        # Only a directory this backend made: an id from outside never becomes a path.
        if known and _GROUP_ID.fullmatch(group_id):
            shutil.rmtree(self.groups_dir / group_id, ignore_errors=True)
