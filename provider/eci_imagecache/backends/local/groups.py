"""Container groups: choose the cache a group uses (explicit, matched, or none), prepare its
images from that cache or the registry into ``groups/<id>/images``, record the group, and create
an automatic cache from what it pulled when it matched none.

``prepare`` lays the images out; running containers on them is a separate step after it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ...engine.errors import InvalidProperty
from ...engine.lifecycle import auto_cache_name, auto_cache_size_gib
from ...engine.matcher import CacheIndex, MatchResult, score
from ...engine.models import (
    CacheKind,
    CacheRecord,
    CacheSelection,
    CacheStatus,
    ContainerGroupRecord,
    ContainerGroupSpec,
    ContainerStatus,
    EvictionStrategy,
    GroupStatus,
    SnapshotKind,
    request_digest,
)
from ...engine.planner import Layer, ResolvedImage
from ...engine.refs import ImageRef
from ...registry.client import RegistryError
from ...runtime.bundle import BundleError, ContainerSettings
from ...runtime.cgroups import DEFAULT_PIDS_LIMIT, GroupLimits
from ...runtime.layers import UnsafeLayer, UnsupportedLayer
from ...runtime.state import GroupState
from ...runtime.supervisor import ContainerRun, RuntimeUnavailable, StartError
from ..base import (
    NOT_STARTED_HERE,
    BackendError,
    BackendRegistryContentError,
    InvalidSpec,
    NotFound,
    QuotaExceeded,
    from_registry,
)
from .blobs import UnsafeDigest
from .build import BuildPipeline, group_budget
from .context import Context
from .housekeeping import Housekeeping
from .ids import GROUP_ID, new_id
from .snapshots import Snapshot

# Where the ports of a group started before groups had a network of their own answer (its
# containers share the host's network namespace). Newer groups have their own address.
LOOPBACK = "127.0.0.1"


def _ignore(arrived: int) -> None:
    """A pull's progress: nothing follows it (the group's create call waits for it)."""


@dataclass
class Prepared:
    """A group's images laid out on disk, and where their bytes came from."""

    images: list[ResolvedImage] = field(default_factory=list)
    layers: dict[str, int] = field(default_factory=dict)
    fetched: int = 0
    from_cache: int = 0
    unpacked_bytes: int = 0
    seconds: float = 0.0


class ContainerGroups:
    def __init__(self, ctx: Context, housekeeping: Housekeeping, pipeline: BuildPipeline) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.housekeeping = housekeeping
        # A pull goes through the build pipeline's fetch: blobs come from a registry one way.
        self.pipeline = pipeline
        self._lock = threading.Lock()
        self._index = CacheIndex()
        self._index_version = -1
        # Groups this process accounts for: those it creates (a reconcile leaves a group alone
        # while its creator lives) and those a reconcile here found claimed by a record.
        self._accounted: set[str] = set()

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
                missing = InvalidProperty("cache_id", f"image cache {spec.cache_id} does not exist")
                raise InvalidSpec(str(missing), problem=missing) from None
            if not cache.usable:
                failure = f": {cache.failure}" if cache.failure else ""
                unusable = InvalidProperty(
                    "cache_id",
                    f"image cache {cache.id} is not usable ({cache.status.value}{failure})",
                )
                raise InvalidSpec(str(unusable), problem=unusable)
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
        """Have each image's blobs and layers in the stores: from the cache where it holds them
        (and the pull policy allows), else fetched from the registry as a build fetches them
        (several at once, largest first, each layer unpacked as it arrives). Layers a cache
        holds were unpacked when it was built: these are reused."""
        ctx = self.ctx
        what = f"container group {spec.name}"
        started = time.perf_counter()
        prepared = Prepared()
        snapshot = ctx.snapshots.read(cache.snapshot_id) if cache else None
        with self.store.read() as db:
            held = self.store.cache_layers(db, cache.id) if cache else {}
        cached = [spec.pull_policy(ref) == "IfNotPresent" for ref in spec.images]
        in_cache = [
            snapshot.find(ref) if snapshot and use else None
            for ref, use in zip(spec.images, cached, strict=True)
        ]
        with ctx.registry(
            spec.credentials, spec.plain_http_registries, spec.insecure_registries
        ) as client:
            # Resolving names the group in its own errors.
            asked = [ref for ref, image in zip(spec.images, in_cache, strict=True) if not image]
            resolved = iter(ctx.resolve(client, asked, what))
            prepared.images = [image or next(resolved) for image in in_cache]
            fetch: dict[str, Layer] = {}
            owners: dict[str, ImageRef] = {}
            try:
                for ref, image, use in zip(spec.images, prepared.images, cached, strict=True):
                    for blob in image.blobs:
                        prepared.layers[blob.digest] = blob.size
                        if use and blob.digest in held and ctx.holds(blob.digest, blob.size):
                            continue
                        fetch.setdefault(blob.digest, blob)
                        owners.setdefault(blob.digest, ref)
                if fetch or not all(
                    ctx.layers.has(layer.digest)
                    for image in prepared.images
                    for layer in image.layers
                ):
                    unpacked = self.pipeline.fetch_and_unpack(
                        prepared.images,
                        list(fetch.values()),
                        owners,
                        client,
                        _ignore,
                        group_budget(spec),
                    ).bytes
                else:
                    unpacked = 0  # all there (a start from a cache): nothing to set going
            except RegistryError as err:
                raise from_registry(what, err) from None
            except (
                BackendRegistryContentError,
                UnsafeLayer,
                UnsupportedLayer,
                UnsafeDigest,
            ) as err:
                # A layer the store refused to unpack (unsafe, or of a type it cannot apply).
                raise BackendRegistryContentError(f"{what}: {err}") from None
        prepared.fetched = sum(blob.size for blob in fetch.values())
        prepared.from_cache = sum(prepared.layers.values()) - prepared.fetched
        prepared.unpacked_bytes = unpacked
        prepared.seconds = time.perf_counter() - started
        return prepared

    # groups -------------------------------------------------------------------------------

    def create(
        self, spec: ContainerGroupSpec, client_token: str | None = None
    ) -> ContainerGroupRecord:
        """Choose the cache, prepare the images, start the containers, record the group.

        A ``client_token`` naming a group a create with the same request made returns that
        group as it is now, failed or not (a create repeated after its caller died before
        keeping the answer), as ECI does with a repeated ``ClientToken``; one naming a group
        made for another request gives way: that group is stopped and removed, and this create
        makes a new one."""
        request = request_digest(spec) if client_token else None
        if client_token and (held := self._created_with(client_token, request)):
            return held
        group_id = new_id("eci")
        with self._lock:
            self._accounted.add(group_id)
        snapshots: list[Snapshot] = []
        try:
            return self._make(group_id, spec, client_token, request, snapshots)
        except BaseException as err:
            self._discard(group_id, snapshots)
            named = _named(spec, err)
            if named is err:
                raise
            raise named from err

    def _make(
        self,
        group_id: str,
        spec: ContainerGroupSpec,
        client_token: str | None,
        request: str | None,
        snapshots: list[Snapshot],
    ) -> ContainerGroupRecord:
        """``create``'s work; the snapshot of an automatic cache is added to ``snapshots`` as
        soon as it is taken (a failure removes it)."""
        # The runtime readies what it can for the start while the images are prepared; a
        # release of layers waits until the containers are recorded as mounted on them.
        with self.ctx.runtime.expecting(), self.ctx.using_layers():
            cache, degree, reason = self._select_cache(spec)
            prepared = self.prepare(group_id, spec, cache)
            now = self.ctx.clock()
            auto_snapshot = None
            if cache is None and spec.cache == CacheSelection.AUTO_CREATE:
                auto_snapshot = self.ctx.snapshots.take(
                    self.ctx.holds, new_id("imc"), prepared.images, prepared.layers
                )
                snapshots.append(auto_snapshot)
            record = ContainerGroupRecord(
                id=group_id,
                name=spec.name,
                region=self.ctx.region,
                status=GroupStatus.PENDING,
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
                declared=spec.declaration(),
            )
            record = self._start(record, spec, prepared)
        with self.store.transaction() as db:
            raced = self.store.group_for_token(db, client_token) if client_token else None
            if raced is None:
                if cache is not None:
                    current = self.store.get_cache(db, cache.id)
                    if current is not None:
                        self.store.put_cache(db, current.model_copy(update={"last_used_at": now}))
                elif auto_snapshot is not None:
                    try:
                        auto = self._auto_cache(db, group_id, spec, auto_snapshot, prepared, now)
                    except QuotaExceeded as err:
                        self.ctx.snapshots.remove(auto_snapshot.id)
                        why = f"no matching cache; not created: {err}"
                        record = record.model_copy(update={"match_reason": why})
                        auto_snapshot = None
                    else:
                        why = f"no matching cache; created {auto.name} ({auto.id})"
                        record = record.model_copy(
                            update={"auto_created_cache_id": auto.id, "match_reason": why}
                        )
                self.store.put_group(db, record, client_token, request)
                # Recorded and adopted in one commit: from then on the group's containers are
                # kept (by its supervisor and by recovery) whenever its creator dies.
                self.ctx.runtime.adopt(group_id, db)
        if raced is not None:
            # The same create ran elsewhere meanwhile and recorded its group first: that one
            # counts, and this one goes.
            with self._lock:
                self._accounted.discard(group_id)
                self._accounted.add(raced[0].id)
            self.ctx.runtime.stop(group_id)
            shutil.rmtree(self.workdir(group_id), ignore_errors=True)
            if auto_snapshot is not None:
                self.ctx.snapshots.remove(auto_snapshot.id)
            return self._observed(raced[0])
        return record

    def _discard(self, group_id: str, snapshots: list[Snapshot]) -> None:
        """Remove what a create that failed made before it recorded the group (the record's
        transaction rolled back): its containers, mounts and directory, and the snapshot of
        its automatic cache. Nothing is left that a later read or reconcile would find."""
        with self._lock:
            self._accounted.discard(group_id)
        with contextlib.suppress(Exception):  # the error that brought us here is the one told
            self.ctx.runtime.stop(group_id)
        shutil.rmtree(self.workdir(group_id), ignore_errors=True)
        for snapshot in snapshots:
            self.ctx.snapshots.remove(snapshot.id)

    def _created_with(self, client_token: str, request: str | None) -> ContainerGroupRecord | None:
        """The group a create with this token made, as it is now; None once it has given way.

        A token comes back only when the create that used it never got its answer to its
        caller (the caller died, or the answer was lost). A group recorded under it was
        created: its containers failing (a job that exited non-zero, an entrypoint missing)
        is what that create made, so it is returned as it is, as an uninterrupted create would
        have returned it; making another would run a finished job again. Only a group made
        for another request is removed here (nothing else knows it), not left running."""
        with self.store.read() as db:
            found = self.store.group_for_token(db, client_token)
        if found is None:
            return None
        record, made_for = found
        if made_for == request:
            with self._lock:
                self._accounted.add(record.id)
            return self._observed(record)
        self.delete(record.id)
        return None

    # running ------------------------------------------------------------------------------

    def _runs(self, spec: ContainerGroupSpec, prepared: Prepared) -> list[ContainerRun]:
        by_ref = {str(ref): image for ref, image in zip(spec.images, prepared.images, strict=True)}
        runs = []
        for init, containers in ((True, spec.init_containers), (False, spec.containers)):
            for container in containers:
                image = by_ref[str(container.image)]
                config = json.loads(self.ctx.blobs.path(image.config.digest).read_bytes())
                settings = ContainerSettings(
                    name=container.name,
                    command=list(container.command),
                    args=list(container.args),
                    env=dict(container.env),
                    working_dir=container.working_dir,
                    ports=list(container.ports),
                    cpu=container.cpu,
                    memory_gib=container.memory_gib,
                )
                layers = [layer.digest for layer in image.layers]
                runs.append(ContainerRun(settings, config, layers, init=init))
        return runs

    def _start(
        self, record: ContainerGroupRecord, spec: ContainerGroupSpec, prepared: Prepared
    ) -> ContainerGroupRecord:
        """Start the containers; where none can start here, say so and stay Pending."""
        try:
            self.ctx.runtime.start(
                record.id,
                spec.name,
                self._runs(spec, prepared),
                spec.restart_policy,
                limits=group_limits(spec),
            )
        except RuntimeUnavailable as err:
            return record.model_copy(update={"status_reason": f"{NOT_STARTED_HERE}{err}"})
        except (StartError, BundleError, ValueError) as err:
            return record.model_copy(
                update={"status": GroupStatus.FAILED, "status_reason": f"not started: {err}"}
            )
        return self._observed(record)

    def _observed(self, record: ContainerGroupRecord) -> ContainerGroupRecord:
        """The record with its containers as the runtime sees them now (what the runtime finds
        of a dead supervisor is recorded: this is the provider's read)."""
        return observed(record, self.ctx.runtime.group(record.id))

    def reconcile(self) -> list[str]:
        """Stop and remove containers of groups no record claims (a creator killed mid-start,
        an interrupted delete).

        The runtime's reconcile looks at every group (several reads each), and the provider
        recovers before each operation: done every time, a deployment of N groups would cost
        O(N²). So it runs only when the runtime holds a group, or a group directory, that this
        process does not account for (see ``_accounted``); those it does are left to their next
        read, which checks them against the process table too."""
        if not self._unaccounted():
            return []
        kept: set[str] = set()

        def known(group_id: str) -> bool:
            with self.store.read() as db:
                claimed = self.store.get_group(db, group_id) is not None
            if claimed:  # the runtime keeps it (and adopts it if its creator died)
                kept.add(group_id)
            return claimed

        removed = self.ctx.runtime.reconcile(known)
        with self._lock:
            self._accounted |= kept
        return removed

    def _unaccounted(self) -> bool:
        """Whether the runtime has a group or a group directory this process does not account
        for."""
        runtime = self.ctx.runtime
        with self._lock:
            accounted = set(self._accounted)
        if not set(runtime.group_ids()) <= accounted:
            return True
        with contextlib.suppress(FileNotFoundError):  # names only: this runs before each hook
            for name in os.listdir(runtime.groups_dir):
                if name not in accounted and os.path.exists(
                    os.path.join(runtime.groups_dir, name, "plan.json")
                ):
                    return True
        return False

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
        return self._observed(record)

    def list(self) -> list[ContainerGroupRecord]:
        with self.store.read() as db:
            records = self.store.list_groups(db)
        return [self._observed(r) for r in records]

    def logs(self, group_id: str, container: str, tail: int | None = None) -> bytes:
        check_container(self.get(group_id), container)
        return self.ctx.runtime.logs(group_id, container, tail)

    def delete(self, group_id: str) -> None:
        with self.store.read() as db:
            known = self.store.get_group(db, group_id) is not None
        # Only a group this backend made: an id from outside never becomes a path.
        if not known or not GROUP_ID.fullmatch(group_id):
            return
        with self._lock:  # whatever the stop leaves behind is for the next reconcile
            self._accounted.discard(group_id)
        mounted = self.ctx.runtime.group_layers(group_id)  # before the stop removes its plan
        self.ctx.runtime.stop(group_id)
        with self.store.transaction() as db:
            self.store.delete_group(db, group_id)
        shutil.rmtree(self.workdir(group_id), ignore_errors=True)
        # Layers it pulled without a cache go with it, unless a cache or another group holds
        # them (the rule a cache's delete follows); its image configs (a few KiB) are gc's.
        self.ctx.release(mounted)


def _named(spec: ContainerGroupSpec, err: BaseException) -> BaseException:
    """A create's failure as one line naming the group. A property's refusal (``InvalidSpec``
    starts with the property) and an interruption stay as they are."""
    if isinstance(err, InvalidSpec) or not isinstance(err, Exception):
        return err
    what = f"container group {spec.name}"
    if isinstance(err, BackendError):
        if what in str(err):
            return err
        return type(err)(f"{what}: {err}", code=err.code)
    reason = " ".join(str(err).split()) or type(err).__name__
    return BackendError(f"{what} was not created: {reason}")


def group_limits(spec: ContainerGroupSpec) -> GroupLimits:
    """What the group as a whole may use, enforced on its cgroup and writable layers: its
    declared CPU and memory (none declared: no group limit), its process limit, and its
    ephemeral storage (30 GiB and any extra), as an ECI instance has."""
    return GroupLimits(
        cpu=spec.cpu,
        memory_gib=spec.memory_gib,
        pids=spec.pids_limit or DEFAULT_PIDS_LIMIT,
        ephemeral_storage_gib=spec.ephemeral_storage_gib,
    )


def check_container(record: ContainerGroupRecord, container: str) -> None:
    """``container`` is one of the group's, or NotFound says which it has."""
    names = [c.name for c in record.containers]
    if container not in names:
        raise NotFound(
            f"container group {record.id} has no container {container!r} "
            f"(has {', '.join(names) or 'none running'})"
        )


def observed(record: ContainerGroupRecord, state: GroupState | None) -> ContainerGroupRecord:
    """``record`` with its containers, status and address as the runtime's ``state`` has them."""
    if state is None:
        return record
    containers = [
        ContainerStatus(
            name=c.name,
            init=c.init,
            state=c.state,
            exit_code=c.exit_code,
            restart_count=c.restart_count,
            started_at=_time(c.started_at),
            finished_at=_time(c.finished_at),
            reason=c.reason,
        )
        for c in state.containers
    ]
    ports = sorted({p for c in state.containers for p in c.ports})
    seconds = state.first_process_seconds
    return record.model_copy(
        update={
            "status": GroupStatus(state.status),
            "status_reason": state.reason,
            "containers": containers,
            # Where it answers: the group's own address on this machine's loopback (a group
            # started before groups had their own, the host's), with its lowest port; only once
            # a container has run (not for one never started).
            "address": _address(state.address or LOOPBACK, ports)
            if any(c.started_at is not None for c in state.containers)
            else None,
            "container_start_seconds": round(seconds, 6) if seconds is not None else None,
        }
    )


def _address(host: str, ports: list[int]) -> str:
    return f"{host}:{ports[0]}" if ports else host


def _time(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None
