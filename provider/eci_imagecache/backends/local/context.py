"""What every part of the local backend shares: where state lives, the clock, the registry
client it opens, and the few record operations all parts use (events, deletes, failures)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from platformdirs import user_data_dir

from ...engine.models import CacheEvent, CacheRecord, CacheStatus, RegistryCredential, SnapshotKind
from ...engine.planner import ResolvedImage
from ...engine.refs import ImageRef
from ...registry.client import Credentials, RegistryClient, RegistryError
from ...runtime.layers import DEFAULT_MAX_ENTRIES, LayerStore
from ...runtime.supervisor import Runtime
from ..base import BackendRegistryContentError, NotFound, StoreError, from_registry
from .blobs import BlobStore, UnsafeDigest
from .snapshots import SnapshotFiles
from .store import Store

Clock = Callable[[], datetime]
RegistryFactory = Callable[..., RegistryClient]
PhaseHook = Callable[[str, CacheRecord], None]
LOCAL_REGION = "local"

# Caches this process is building right now (any backend object): never "interrupted".
ACTIVE_BUILDS: set[str] = set()
# Blobs fetched (and manifests resolved) at once per build. A few streams keep the registry and
# the disk busy while one is between requests; more only share the same bandwidth.
DEFAULT_FETCH_CONCURRENCY = 4
# How long a preview may plan from a manifest this process resolved (one `pulumi preview`
# plans every cache within it), and how many resolutions are kept.
PLAN_RESOLVED_SECONDS = 30.0
RESOLVED_KEPT = 1000
# Container groups being created hold this lock (shared) in the layer store; a release waits
# for them this long at most, polling (a burst of starts may hold it without a gap for a while).
LAYERS_LOCK = ".lock"
RELEASE_WAIT_SECONDS = 60.0
RELEASE_POLL_SECONDS = 0.01


def env_fetch_concurrency() -> int:
    """``$ECI_IMAGECACHE_FETCH_CONCURRENCY`` (at least 1), else the default."""
    value = os.environ.get("ECI_IMAGECACHE_FETCH_CONCURRENCY", "")
    return max(1, int(value)) if value.strip().isdigit() else DEFAULT_FETCH_CONCURRENCY


def env_fsync() -> bool:
    """``$ECI_IMAGECACHE_FSYNC=1``: flush each blob to disk before it gets its name."""
    return os.environ.get("ECI_IMAGECACHE_FSYNC", "") not in ("", "0")


def env_max_layer_entries() -> int:
    """``$ECI_IMAGECACHE_MAX_LAYER_ENTRIES``: entries (files, directories, links) one layer may
    unpack to, else the default (see runtime/layers.py)."""
    value = os.environ.get("ECI_IMAGECACHE_MAX_LAYER_ENTRIES", "").strip()
    return max(1, int(value)) if value.isdigit() else DEFAULT_MAX_ENTRIES


def default_data_dir() -> Path:
    """``$ECI_IMAGECACHE_HOME`` or the per-user data directory."""
    return Path(os.environ.get("ECI_IMAGECACHE_HOME") or user_data_dir("eci-imagecache"))


def utc_now() -> datetime:
    return datetime.now(UTC)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def build_ended(host: str, pid: int, cache_id: str, this_host: str) -> bool:
    """Whether the process that claimed the build of ``cache_id`` has ended: only a claim made
    on this host can be judged, and a build of this very process is never "ended"."""
    if host != this_host or cache_id in ACTIVE_BUILDS:
        return False
    return pid == os.getpid() or not pid_alive(pid)


def interrupted(pid: int) -> str:
    return f"build interrupted: process {pid} ended before it finished"


def as_failed(record: CacheRecord, reason: str) -> CacheRecord:
    """The record of a build that failed: a failed rebuild keeps the snapshot it had; a failed
    first build has none usable."""
    keeps_snapshot = record.status == CacheStatus.UPDATING
    return record.model_copy(
        update={
            "status": CacheStatus.READY if keeps_snapshot else CacheStatus.FAILED,
            "snapshot": record.snapshot if keeps_snapshot else SnapshotKind.NONE,
            "failure": reason,
        }
    )


@dataclass
class Context:
    data_dir: Path
    clock: Clock
    region: str
    registry_factory: RegistryFactory
    on_phase: PhaseHook
    host: str = field(default_factory=socket.gethostname)
    fetch_concurrency: int = field(default_factory=env_fetch_concurrency)
    fsync: bool = field(default_factory=env_fsync)
    max_layer_entries: int = field(default_factory=env_max_layer_entries)

    def __post_init__(self) -> None:
        self.store = Store(self.data_dir / "state.db")
        self.blobs = BlobStore(self.data_dir / "blobs", fsync=self.fsync)
        self.snapshots = SnapshotFiles(self.data_dir / "snapshots")
        self.groups_dir = self.data_dir / "groups"
        # (reference, platform, plain HTTP, insecure): when it was resolved, and to what.
        self._resolved: dict[tuple[str, str, bool, bool], tuple[float, ResolvedImage]] = {}
        self._resolved_lock = threading.Lock()
        # Unpacked layers (shared by caches and groups) and the containers running on them.
        self.layers = LayerStore(
            self.data_dir / "layers", fsync=self.fsync, max_entries=self.max_layer_entries
        )
        # A group's directory (bundles, writable layers, logs) is the runtime's.
        self.runtime = Runtime(self.groups_dir, self.data_dir / "state.db", self.layers)

    def holds(self, digest: str, size: int | None = None) -> bool:
        """Whether the store holds this blob's content: the blob (at ``size`` bytes, when
        given), or (for a layer) its unpacked directory; a layer unpacked as it downloaded
        keeps no blob."""
        return self.blobs.has(digest, size) or self.layers.has(digest)

    # records ------------------------------------------------------------------------------

    def event(
        self,
        db: sqlite3.Connection,
        cache_id: str,
        reason: str,
        message: str,
        kind: str = "Normal",
    ) -> None:
        event = CacheEvent(at=self.clock(), kind=kind, reason=reason, message=message)
        self.store.add_event(db, cache_id, event)

    def get(self, cache_id: str) -> CacheRecord:
        with self.store.read() as db:
            record = self.store.get_cache(db, cache_id)
        if record is None:
            raise NotFound(f"image cache {cache_id} not found")
        return record

    def update(
        self, cache_id: str, event: tuple[str, str] | None = None, **fields: object
    ) -> CacheRecord:
        with self.store.transaction() as db:
            record = self.store.get_cache(db, cache_id)
            if record is None:
                raise NotFound(f"image cache {cache_id} was deleted while building")
            record = record.model_copy(update=fields)
            self.store.put_cache(db, record)
            if event:
                self.event(db, cache_id, *event)
        return record

    def fail(self, db: sqlite3.Connection, record: CacheRecord, reason: str) -> CacheRecord:
        record = as_failed(record, reason)
        self.store.put_cache(db, record)
        self.event(db, record.id, "BuildFailed", reason, kind="Warning")
        return record

    def delete_cache(
        self,
        db: sqlite3.Connection,
        cache_id: str,
        why: tuple[str, str] | None = None,
        release: bool = True,
    ) -> None:
        """Delete in ``db``'s transaction; once that commits, the snapshot file goes and so do
        the blobs and layers only this cache held (see :meth:`release`; gc, which counts what
        it removes, passes ``release=False`` and removes them itself). ``why`` (reason,
        message) is kept after the cache is gone, for a removal nobody asked for."""
        record = self.store.get_cache(db, cache_id)
        held = self.store.cache_layers(db, cache_id)
        self.store.delete_cache(db, cache_id)
        if why is not None and record is not None:
            reason, message = why
            event = CacheEvent(at=self.clock(), kind="Warning", reason=reason, message=message)
            self.store.add_removal(db, cache_id, event)
        if record is not None and record.snapshot_id:
            snapshot_id = record.snapshot_id
            self.store.after_commit(lambda: self.snapshots.remove(snapshot_id))
        if held and release:
            self.store.after_commit(lambda: self.release(held))

    def release(self, digests: Iterable[str]) -> None:
        """Remove the blobs and unpacked layers of ``digests`` that nothing holds any more
        (``Store.unheld``, the rule gc follows too).

        Called once the commit that let go of them is done (a cache deleted, a rebuild that
        no longer holds them). The decision is taken again in a write transaction of its own,
        and the layers leave the store inside it: a build that claims one of them meanwhile
        either holds it in that decision (and it stays) or claims it after it has gone (and
        fetches it). Their files are removed after the commit. A process that dies in between
        leaves them to gc (temporary directories of a dead process), as does a store that
        cannot be written now: what asked for the release is done either way."""
        digests = list(digests)
        if not digests:
            return
        detached = []
        try:
            with self._layers_exclusively() as held:
                if not held:
                    return
                with self.store.transaction() as db:
                    unheld = self.store.unheld(db, digests, self.runtime.layers_in_use)
                    for digest in sorted(unheld):
                        self.blobs.remove(digest)
                        directory = self.layers.detach(digest)
                        if directory is not None:
                            detached.append(directory)
            for directory in detached:
                self.layers.remove_detached(directory)
        except (StoreError, OSError):
            return

    @contextlib.contextmanager
    def using_layers(self) -> Iterator[None]:
        """Within: this thread counts on layers being in the store that nothing may hold yet
        (a container group from the moment its images are prepared until its containers are
        recorded as mounted on them, the runtime's plan). A shared lock (flock, across
        processes; gone with the process that held it): :meth:`release` takes it exclusively,
        so it never removes a layer a group is about to mount."""
        try:
            fd = os.open(self.layers.root / LAYERS_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:  # a read-only store: nothing is removed from it either
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _layers_exclusively(self) -> Iterator[bool]:
        """The layers lock, exclusively (no group between its preparation and its plan), within
        RELEASE_WAIT_SECONDS; False when groups kept it longer (what was to be removed is left
        to gc)."""
        fd = os.open(self.layers.root / LAYERS_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + RELEASE_WAIT_SECONDS
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        yield False
                        return
                    time.sleep(RELEASE_POLL_SECONDS)
            yield True
        finally:
            os.close(fd)

    # registry -----------------------------------------------------------------------------

    def registry(
        self, credentials: list[RegistryCredential], plain_http: list[str], insecure: list[str]
    ) -> RegistryClient:
        return self.registry_factory(
            credentials={c.server: Credentials(c.username, c.password) for c in credentials},
            plain_http=set(plain_http),
            insecure=set(insecure),
        )

    def resolve(
        self, client: RegistryClient, images: list[ImageRef], what: str, recent: float = 0.0
    ) -> list[ResolvedImage]:
        """Each image's manifest for this platform (all images at once, in order), every blob
        digest safe to store.

        ``recent``: seconds within which an image this process resolved anonymously may be
        answered again without asking the registry (previews plan many caches of the same
        images; builds always ask). Images read with credentials are never reused, so a
        resource without access to an image never plans from one that had it."""

        def one(ref: ImageRef) -> ResolvedImage:
            anonymous = ref.registry not in getattr(client, "credentials", {})
            key = (
                str(ref),
                getattr(client, "platform", ""),
                ref.registry in getattr(client, "plain_http", ()),
                ref.registry in getattr(client, "insecure", ()),
            )
            if recent and anonymous:
                with self._resolved_lock:
                    seen = self._resolved.get(key)
                if seen is not None and time.monotonic() - seen[0] < recent:
                    return seen[1]
            try:
                image = client.resolve(ref)
            except RegistryError as err:
                raise from_registry(what, err) from None
            for blob in image.blobs:
                try:
                    self.blobs.path(blob.digest)
                except UnsafeDigest as err:
                    raise BackendRegistryContentError(f"{what}: image {ref}: {err}") from None
            if anonymous:
                with self._resolved_lock:
                    if len(self._resolved) >= RESOLVED_KEPT:
                        self._resolved.clear()
                    self._resolved[key] = (time.monotonic(), image)
            return image

        if len(images) <= 1:
            return [one(ref) for ref in images]
        workers = min(self.fetch_concurrency, len(images))
        with ThreadPoolExecutor(workers, thread_name_prefix="resolve") as pool:
            return list(pool.map(one, images))
