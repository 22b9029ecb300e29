"""The build pipeline: resolve the images, plan what to fetch and reuse, claim quota, fetch the
blobs, take the snapshot, and commit the cache Ready.

Errors before the claim leave nothing behind; errors after it leave the cache Failed with the
reason (never usable). A rebuild keeps serving the old images, layers and snapshot until one
final commit. ``fetch`` is the one place blobs come from the registry, for a build and for a
container group pulling what no cache holds (``fetch_and_unpack``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from ...engine.diff import ChangeKind, diff_cache
from ...engine.models import (
    GIB,
    CacheKind,
    CacheRecord,
    CacheStatus,
    ContainerGroupSpec,
    ImageCacheSpec,
    SnapshotKind,
)
from ...engine.planner import BuildPlan, Layer, PlanError, ResolvedImage, plan_build
from ...engine.refs import ImageRef
from ...registry.client import RegistryClient, RegistryError
from ...runtime.layers import Budget, Feed, Unpacked, UnsafeLayer, UnsupportedLayer
from ..base import (
    BackendError,
    BackendRegistryContentError,
    BuildFailed,
    Conflict,
    InvalidSpec,
    NotFound,
    Progress,
    StoreError,
    from_registry,
)
from .context import ACTIVE_BUILDS, PLAN_RESOLVED_SECONDS, Context
from .housekeeping import Housekeeping
from .ids import new_id

ADOPT_POLL_SECONDS = 0.2


def _reason(err: Exception) -> str:
    """One line that says what went wrong, never a traceback."""
    if isinstance(err, RegistryError | BackendError):
        return str(err)
    if isinstance(err, OSError) and err.strerror:
        return f"{err.strerror}" + (f": {err.filename}" if err.filename else "")
    return repr(err)


def _no_progress(done: int, total: int) -> None:
    pass


def blob_owners(images: Iterable[ResolvedImage]) -> dict[str, ImageRef]:
    """The image each blob is fetched through (its repository on its registry)."""
    refs: dict[str, ImageRef] = {}
    for image in images:
        ref = ImageRef.parse(image.reference)
        for blob in image.blobs:
            refs[blob.digest] = ref
    return refs


_DIFF_ID = re.compile(r"sha256:[0-9a-f]{64}")
# An image config is a few KiB (a long history, some hundreds): one read whole to find its
# diff_ids is bounded.
MAX_CONFIG_BYTES = 16 << 20


def cache_budget(name: str, size_gib: int) -> Budget:
    """What the layers of a cache's build may unpack: the cache's size."""
    return Budget(size_gib * GIB, f"image cache {name}'s size of {size_gib} GiB")


def group_budget(spec: ContainerGroupSpec) -> Budget:
    """What the layers a group pulls itself may unpack: its ephemeral storage (30 GiB and the
    extra it declares), where ECI keeps a group's images."""
    size = spec.ephemeral_storage_gib
    return Budget(size * GIB, f"container group {spec.name}'s ephemeral storage of {size} GiB")


def check_config_sizes(images: Iterable[ResolvedImage]) -> None:
    """Refuse, before it is fetched, an image config too large to read whole."""
    for image in images:
        if image.config.size > MAX_CONFIG_BYTES:
            raise BackendRegistryContentError(
                f"image {image.reference}: config {image.config.digest[:19]} is "
                f"{image.config.size:,} bytes (at most {MAX_CONFIG_BYTES:,})"
            )


def expected_diff_ids(
    images: Iterable[ResolvedImage], read: Callable[[str], bytes]
) -> dict[str, str]:
    """Each layer's diff_id as its image's config names it (``rootfs.diff_ids[i]`` for the
    i-th layer, the OCI image spec's rule); ``read`` gives a config blob's bytes."""
    expected: dict[str, str] = {}
    named_by: dict[str, str] = {}
    for image in images:
        what = f"image {image.reference}: config {image.config.digest[:19]}"
        try:
            body = read(image.config.digest)
        except OSError as err:
            raise BackendRegistryContentError(f"{what} cannot be read ({err.strerror})") from None
        try:
            diff_ids = json.loads(body)["rootfs"]["diff_ids"]
        except (ValueError, KeyError, TypeError) as err:
            raise BackendRegistryContentError(
                f"{what} names no rootfs.diff_ids ({type(err).__name__})"
            ) from None
        if not isinstance(diff_ids, list) or len(diff_ids) != len(image.layers):
            count = len(diff_ids) if isinstance(diff_ids, list) else "no"
            raise BackendRegistryContentError(
                f"{what} names {count} diff_ids for the manifest's {len(image.layers)} layers"
            )
        for layer, diff_id in zip(image.layers, diff_ids, strict=True):
            if not isinstance(diff_id, str) or not _DIFF_ID.fullmatch(diff_id):
                raise BackendRegistryContentError(
                    f"{what}: diff_id {str(diff_id)[:80]!r} is not sha256"
                )
            if expected.setdefault(layer.digest, diff_id) != diff_id:
                raise BackendRegistryContentError(
                    f"{what} names diff_id {diff_id[:19]} for layer {layer.digest[:19]}, "
                    f"which {named_by[layer.digest]} names {expected[layer.digest][:19]}"
                )
            named_by.setdefault(layer.digest, f"image {image.reference}")
    return expected


@dataclass
class Unpacking:
    """Unpacks the layers of a build (or of a group's pull) into the layer store, and says what
    it did (a build's event).

    A layer being downloaded is unpacked from the same bytes as they arrive (a :class:`Feed`);
    a layer whose blob the store held already is unpacked from that blob, unless it is
    unpacked already. Each layer's uncompressed content must match its diff_id in
    ``diff_ids`` (from the image configs), and all of them together fit in ``budget``: the
    bytes unpacked here, and those of the layers the store held unpacked already (as recorded
    when they were unpacked; a layer from before the store kept records counts nothing)."""

    ctx: Context
    layer_digests: set[str]
    diff_ids: Mapping[str, str] = field(default_factory=dict)
    budget: Budget | None = None
    layers: int = 0
    bytes: int = 0
    first_start: float | None = None  # perf_counter times: layers unpack side by side
    last_end: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    checked: set[str] = field(default_factory=set, repr=False)

    def holds(self, blob: Layer) -> bool:
        """Whether ``blob`` is a layer of these images that the store holds unpacked."""
        if blob.digest in self.layer_digests and self.ctx.layers.has(blob.digest):
            self._held(blob.digest)
            return True
        return False

    def feed(self, blob: Layer) -> Feed | None:
        """A feed for ``blob``'s download to write to, or None when it needs no unpacking."""
        if blob.digest not in self.layer_digests or self.holds(blob):
            return None
        return self.ctx.layers.feed(blob.digest, self.diff_ids.get(blob.digest), self.budget)

    def close(self, feed: Feed, verified: bool) -> None:
        """End a feed: commit its layer when the blob was verified, else discard it."""
        try:
            done = feed.close(verified)
        except (UnsafeLayer, UnsupportedLayer) as err:
            raise BackendRegistryContentError(str(err)) from None
        if done is not None:
            self._count(done)

    def unpack(self, digest: str) -> None:
        """Unpack a layer from the blob the store holds."""
        if self.ctx.layers.has(digest):
            self._held(digest)
            return
        try:
            done = self.ctx.layers.unpack(
                digest,
                self.ctx.blobs.path(digest),
                diff_id=self.diff_ids.get(digest),
                budget=self.budget,
            )
        except (UnsafeLayer, UnsupportedLayer) as err:
            raise BackendRegistryContentError(str(err)) from None
        self._count(done)

    def _held(self, digest: str) -> None:
        """A layer the store holds unpacked: its recorded diff_id must be the one expected, and
        its recorded size counts against the budget (once)."""
        with self.lock:
            if digest in self.checked:
                return
            self.checked.add(digest)
        try:
            self.ctx.layers.check_diff_id(digest, self.diff_ids.get(digest))
            meta = self.ctx.layers.recorded(digest)
            if self.budget is not None and meta is not None:
                self.budget.charge(meta.bytes, f"layer {digest[:19]} (unpacked already)")
        except UnsafeLayer as err:
            raise BackendRegistryContentError(str(err)) from None

    def _count(self, done: Unpacked) -> None:
        if not done.reused:
            with self.lock:
                self.layers += 1
                self.bytes += done.bytes
                end = time.perf_counter()
                start = end - done.seconds
                self.first_start = min(start, self.first_start or start)
                self.last_end = max(end, self.last_end or end)

    def summary(self) -> str:
        span = (self.last_end or 0.0) - (self.first_start or 0.0)
        return f"unpacked {self.layers} layers ({self.bytes / 1e6:.1f} MB) in {span:.2f} s"


class _Discard:
    def write(self, data: bytes) -> None:
        pass


_DISCARD = _Discard()


class _Stopped(Exception):
    """Another download of the same build failed: this one ends at its next chunk."""


class BuildPipeline:
    def __init__(self, ctx: Context, housekeeping: Housekeeping) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.housekeeping = housekeeping

    # planning -----------------------------------------------------------------------------

    def _client(self, spec: ImageCacheSpec) -> RegistryClient:
        return self.ctx.registry(
            spec.credentials, spec.plain_http_registries, spec.insecure_registries
        )

    def _plan(self, client: RegistryClient, spec: ImageCacheSpec, recent: float = 0.0) -> BuildPlan:
        what = f"image cache {spec.name}"
        images = self.ctx.resolve(client, spec.images, what, recent)
        with self.store.read() as db:
            referenced = self.store.referenced_among(
                db, (blob.digest for image in images for blob in image.blobs)
            )
        held = {
            blob.digest
            for image in images
            for blob in image.blobs
            if blob.digest in referenced and self.ctx.holds(blob.digest, blob.size)
        }
        try:
            return plan_build(images, spec.size_gib, held, spec.layer_reuse)
        except PlanError as err:
            raise InvalidSpec(f"{what}: {err}", problem=err) from None

    def plan(self, spec: ImageCacheSpec) -> BuildPlan:
        """What building ``spec`` would fetch and reuse now; nothing is written. Manifests
        resolved in the last seconds are reused (see ``Context.resolve``); a build asks again."""
        with self._client(spec) as client:
            return self._plan(client, spec, recent=PLAN_RESOLVED_SECONDS)

    # create and update --------------------------------------------------------------------

    def create(
        self,
        spec: ImageCacheSpec,
        client_token: str | None,
        progress: Progress | None,
        wait: bool,
    ) -> CacheRecord:
        """Plan, claim quota, build. With ``wait=False`` the build goes on in a background
        thread and the Creating record returns at once (as the API does). A ``client_token``
        naming a cache that is not Failed returns that cache (once built, with ``wait``)."""
        self.housekeeping.expire()
        if client_token and (held := self._created_with(client_token, wait)):
            return held
        with contextlib.ExitStack() as owned:
            client = owned.enter_context(self._client(spec))
            plan = self._plan(client, spec)
            ctx = self.ctx
            record = CacheRecord(
                id=new_id("imc"),
                name=spec.name,
                kind=CacheKind.MANUAL,
                region=ctx.region,
                images=spec.images,
                size_gib=spec.size_gib,
                status=CacheStatus.CREATING,
                eviction=spec.eviction,
                retention_days=spec.retention_days,
                created_at=ctx.clock(),
                instant=spec.instant,
                layer_reuse=spec.layer_reuse,
                credential_servers=[c.server for c in spec.credentials],
                plan=plan.summary(),
            )
            ACTIVE_BUILDS.add(record.id)  # claimed below: never seen as dead by this process
            try:
                with self.store.transaction() as db:
                    raced = self.store.cache_for_token(db, client_token) if client_token else None
                    if raced is None or raced.status == CacheStatus.FAILED:
                        raced = None
                        plan = self._still_held(db, plan)
                        record = record.model_copy(update={"plan": plan.summary()})
                        self._insert(db, spec, record, client_token, plan)
            except BaseException:
                ACTIVE_BUILDS.discard(record.id)
                raise
            if raced is not None:  # the same create ran elsewhere meanwhile: that one counts
                ACTIVE_BUILDS.discard(record.id)
                return self._created_with(client_token or "", wait) or raced
            return self._finish(record, plan, client, owned.pop_all(), progress, wait)

    def _insert(
        self,
        db: sqlite3.Connection,
        spec: ImageCacheSpec,
        record: CacheRecord,
        client_token: str | None,
        plan: BuildPlan,
    ) -> None:
        """The Created record and its build claim, in the caller's transaction: a process
        that dies after this commit leaves a build that recovery finds and fails."""
        ctx = self.ctx
        # A failed earlier attempt at the same cache (a create that errored, which Pulumi
        # does not keep in state, or one with the same client token) gives way to this one.
        retried = [
            c
            for c in self.store.caches_named(db, spec.name)
            if c.status == CacheStatus.FAILED and c.kind == CacheKind.MANUAL
        ]
        same_token = self.store.cache_for_token(db, client_token) if client_token else None
        if same_token is not None and same_token.id not in {c.id for c in retried}:
            retried.append(same_token)
        for failed in retried:
            ctx.delete_cache(db, failed.id)
        victims = self.housekeeping.make_room(db, CacheKind.MANUAL, f"image cache {spec.name}")
        self.store.put_cache(db, record, client_token=client_token)
        ctx.event(
            db,
            record.id,
            "Created",
            f"image cache {spec.name} created"
            + "".join(f"; replaces failed {c.id}" for c in retried)
            + "".join(f"; evicted {v.name} ({v.id}, LRU)" for v in victims),
        )
        self._claim(db, record, plan)

    def _claim(self, db: sqlite3.Connection, record: CacheRecord, plan: BuildPlan) -> None:
        """Claim the build, holding every blob it will hold from now on (a delete or gc
        meanwhile keeps them)."""
        digests = {blob.digest for image in plan.images for blob in image.blobs}
        self.store.start_build(db, record.id, self.ctx.host, os.getpid(), digests)
        self.ctx.event(db, record.id, "Building", plan.summary())

    def _still_held(self, db: sqlite3.Connection, plan: BuildPlan) -> BuildPlan:
        """``plan``, or (in the claim's transaction) the plan again when a blob it reuses is no
        longer held by any cache (one deleted since it was planned lets its blobs go): those
        are fetched."""
        reused = {blob.digest for blob in plan.reuse}
        if not reused:
            return plan
        held = self.store.referenced_among(db, reused)
        if held == reused:
            return plan
        return plan_build(plan.images, plan.size_gib, held, layer_reuse=True)

    def _created_with(self, client_token: str, wait: bool) -> CacheRecord | None:
        """The cache a create with this token made, unless it failed; with ``wait``, once its
        first build has ended (a build whose process died ends Failed through recovery)."""
        while True:
            with self.store.read() as db:
                record = self.store.cache_for_token(db, client_token)
            if record is None or record.status == CacheStatus.FAILED:
                return None
            if not wait or record.status != CacheStatus.CREATING:
                return record
            time.sleep(ADOPT_POLL_SECONDS)
            self.housekeeping.recover()

    def update(self, cache_id: str, spec: ImageCacheSpec, wait: bool) -> CacheRecord:
        """Update in place; a change of images or size rebuilds while the old snapshot serves."""
        current = self.ctx.get(cache_id)
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
            return self.ctx.update(
                cache_id, event=("Updated", f"settings of {spec.name} updated"), **settings
            )
        with contextlib.ExitStack() as owned:
            client = owned.enter_context(self._client(spec))
            plan = self._plan(client, spec)
            content = {"images": spec.images, "size_gib": spec.size_gib}
            with self.store.transaction() as db:
                if any(row[0] == cache_id for row in self.store.builds(db)):
                    raise Conflict(
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
                plan = self._still_held(db, plan)
                self.ctx.event(db, cache_id, "Rebuilding", plan.summary())
                ACTIVE_BUILDS.add(cache_id)
                self._claim(db, record, plan)
            return self._finish(record, plan, client, owned.pop_all(), None, wait, final=content)

    # the build ----------------------------------------------------------------------------

    def _finish(
        self,
        record: CacheRecord,
        plan: BuildPlan,
        client: RegistryClient,
        release: contextlib.ExitStack,
        progress: Progress | None,
        wait: bool,
        final: dict[str, Any] | None = None,
    ) -> CacheRecord:
        """Run the claimed build here or, without ``wait``, in a thread; the build owns the
        registry client (``release`` closes it) until it ends."""
        if wait:
            with release:
                return self._build(record, plan, client, progress, final)

        def build() -> None:
            with release, contextlib.suppress(BackendError):
                self._build(record, plan, client, progress, final)

        threading.Thread(target=build, name=f"build-{record.id}", daemon=True).start()
        return record

    def _build(
        self,
        record: CacheRecord,
        plan: BuildPlan,
        client: RegistryClient,
        progress: Progress | None = None,
        final: dict[str, Any] | None = None,
    ) -> CacheRecord:
        try:
            return self._run(record, plan, client, progress or _no_progress, final or {})
        except Exception as err:  # every failure ends in a Failed record, then re-raises
            reason = _reason(err)
            # A store that cannot be written now (disk full) keeps the claim: recovery fails
            # the build once this process has let go of it.
            with contextlib.suppress(StoreError), self.store.transaction() as db:
                current = self.store.get_cache(db, record.id)
                if current is not None:
                    self.ctx.fail(db, current, reason)
                self.store.end_build(db, record.id)
            message = f"image cache {record.name} ({record.id}) failed"
            if isinstance(err, RegistryError):
                raise from_registry(message, err) from None
            raise BuildFailed(f"{message}: {reason}") from None
        finally:
            ACTIVE_BUILDS.discard(record.id)

    def fetch(
        self,
        blobs: Iterable[Layer],
        owners: Mapping[str, ImageRef],
        client: RegistryClient,
        progress: Callable[[int], None],
        unpacking: Unpacking | None = None,
    ) -> None:
        """Fetch ``blobs`` into the blob store (digests verified on arrival), each from the
        repository of its image in ``owners``, ``ctx.fetch_concurrency`` at once, largest first
        so that the last to finish is a small one. With ``unpacking``, each layer is unpacked
        from its bytes as they arrive and committed once they matched its digest, and its blob
        is not kept (the image config and any blob not unpacked are). ``progress(n)``
        is called in this thread with the bytes that arrived since the last call; the first
        failure stops the other downloads and is raised once they have let go of their files."""
        blobs = sorted(blobs, key=lambda blob: blob.size, reverse=True)
        if not blobs:
            return
        lock = threading.Lock()
        arrived = 0
        stop = threading.Event()

        def count(size: int) -> None:
            nonlocal arrived
            if stop.is_set():
                raise _Stopped
            with lock:
                arrived += size

        def one(blob: Layer) -> None:
            if stop.is_set():
                return
            owner = owners[blob.digest]
            if unpacking is not None and unpacking.holds(blob):
                # Fetched again (a build that reuses no layer), verified, and not kept twice.
                client.fetch_blob(owner, blob, _DISCARD, count)  # type: ignore[arg-type]
                return
            feed = unpacking.feed(blob) if unpacking is not None else None
            if feed is None:
                self.ctx.blobs.write(
                    blob.digest, lambda out: client.fetch_blob(owner, blob, out, count)
                )
                return
            # A layer unpacked as it downloads keeps no blob: its bytes go to the layer only,
            # which is committed once they matched the digest (one write of the content, and
            # the disk holds each layer once).
            assert unpacking is not None  # a feed comes from it
            verified = False
            try:
                client.fetch_blob(owner, blob, feed, count)  # type: ignore[arg-type]
                verified = True
            finally:
                unpacking.close(feed, verified)

        reported = 0
        workers = max(1, min(self.ctx.fetch_concurrency, len(blobs)))
        with ThreadPoolExecutor(workers, thread_name_prefix="fetch") as pool:
            pending = {pool.submit(one, blob) for blob in blobs}
            try:
                while pending:
                    done, pending = wait(pending, timeout=0.25, return_when=FIRST_EXCEPTION)
                    for future in done:
                        future.result()
                    with lock:
                        now = arrived
                    if now > reported:
                        progress(now - reported)
                        reported = now
            except BaseException:
                stop.set()
                for future in pending:
                    future.cancel()
                raise

    def fetch_and_unpack(
        self,
        images: list[ResolvedImage],
        blobs: list[Layer],
        owners: Mapping[str, ImageRef],
        client: RegistryClient,
        progress: Callable[[int], None],
        budget: Budget | None = None,
    ) -> Unpacking:
        """Fetch ``blobs`` (see :meth:`fetch`), unpacking each layer of ``images`` in the same
        pass as its download (see :class:`Feed`), so a group starting from the cache only
        mounts. Layers whose blobs the store holds already are unpacked from them meanwhile,
        unless an earlier build (of a cache, or for a group) did so.

        The image configs come first (small): each names its layers' diff_ids, which every
        layer is checked against as it unpacks. ``budget``: what the layers may unpack in all
        (a cache's size, a group's ephemeral storage)."""
        layer_digests = {layer.digest for image in images for layer in image.layers}
        configs = {image.config.digest for image in images} - layer_digests
        check_config_sizes(images)
        self.fetch([blob for blob in blobs if blob.digest in configs], owners, client, progress)
        diff_ids = expected_diff_ids(
            images, lambda digest: self.ctx.blobs.path(digest).read_bytes()
        )
        unpacking = Unpacking(self.ctx, layer_digests, diff_ids, budget)
        layers = [blob for blob in blobs if blob.digest not in configs]
        fetched = {blob.digest for blob in layers}
        held = sorted(layer_digests - fetched)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="unpack") as worker:
            pending = [worker.submit(unpacking.unpack, digest) for digest in held]
            try:
                self.fetch(layers, owners, client, progress, unpacking)
            except BaseException:
                for future in pending:  # what has not started is not needed any more
                    future.cancel()
                raise
            for future in pending:
                future.result()
        return unpacking

    def _run(
        self,
        record: CacheRecord,
        plan: BuildPlan,
        client: RegistryClient,
        progress: Progress,
        final: dict[str, Any],
    ) -> CacheRecord:
        """Fetch, snapshot, then commit everything at once. ``final`` holds a rebuild's new
        images and size, which become the record's only in that commit."""
        ctx = self.ctx
        total = max(1, plan.fetch_bytes)
        done = 0
        last_report = time.monotonic()

        def fetched(size: int) -> None:
            nonlocal done, last_report
            done += size
            progress(done, plan.fetch_bytes)
            if time.monotonic() - last_report > 0.5 or done == total:
                ctx.update(record.id, progress=min(90, 90 * done // total))
                last_report = time.monotonic()

        unpacking = self.fetch_and_unpack(
            plan.images,
            plan.fetch,
            blob_owners(plan.images),
            client,
            fetched,
            cache_budget(record.name, plan.size_gib),
        )
        ctx.update(record.id, event=("Unpacked", unpacking.summary()))
        layers = {blob.digest: blob.size for image in plan.images for blob in image.blobs}
        if record.instant and record.status == CacheStatus.CREATING:
            # First build of an instant cache: usable now, from the blobs on local disk.
            with self.store.transaction() as db:
                self.store.set_layers(db, record.id, layers)
            record = ctx.update(
                record.id,
                snapshot=SnapshotKind.LOCAL,
                progress=90,
                event=("LocalSnapshotReady", "instant cache usable from a local snapshot"),
            )
            ctx.on_phase("local-snapshot", record)
        snapshot = ctx.snapshots.take(ctx.holds, record.id, plan.images, layers)
        with self.store.transaction() as db:
            current = self.store.get_cache(db, record.id)
            if current is None:
                raise NotFound(f"image cache {record.id} was deleted while building")
            previous_snapshot = current.snapshot_id
            previous_layers = self.store.cache_layers(db, record.id)
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
            ctx.event(db, record.id, "Ready", f"standard snapshot {snapshot.id} ready{released}")
        if previous_snapshot and previous_snapshot != snapshot.id:
            ctx.snapshots.remove(previous_snapshot)
        # A rebuild lets go of what only its old images held.
        ctx.release(previous_layers.keys() - layers.keys())
        ctx.on_phase("ready", record)
        return record
