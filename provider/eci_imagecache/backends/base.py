"""The interface every backend implements, mirroring the ECI image-cache API, and its errors.

Callers tell failures apart by type, never by message text: ``NotFound`` (read: gone),
``QuotaExceeded`` (delete or mark a cache LRU), ``InvalidSpec`` (a property is wrong),
``BackendRegistryError`` and its kinds (the images cannot be read), ``Conflict`` (try again
later), ``StoreError`` (the local store cannot be written). Every error may carry the API's
``code``. They are all :class:`BackendError`: a backend translates what the registry client
(``registry.client.RegistryError``), the engine and the cloud SDK raise into this family, so
its callers catch this one family and no other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Protocol, runtime_checkable

from pydantic import BaseModel

from ..engine.errors import InvalidProperty
from ..engine.matcher import MatchResult
from ..engine.models import (
    CacheEvent,
    CacheKind,
    CacheRecord,
    ContainerGroupRecord,
    ContainerGroupSpec,
    ImageCacheSpec,
    Quota,
)
from ..engine.planner import BuildPlan
from ..registry.client import (
    AuthenticationError,
    DigestMismatch,
    ImageNotFound,
    MalformedManifest,
    RegistryError,
    RegistryUnavailable,
)

Progress = Callable[[int, int], None]
"""``progress(bytes_done, bytes_total)`` during a build."""

NOT_STARTED_HERE = "prepared; not started: "
"""How a group's ``status_reason`` begins when its images are prepared but no container can
start where it is (the local backend without a usable OCI runtime): it stays Pending."""


class BackendError(RuntimeError):
    """An operation failed; the message is safe to show (it never holds a secret).

    ``code`` is the API's error code when the failure came from (or maps onto) one, such as
    ``QuotaExceeded.ImageCache``; ``None`` otherwise.
    """

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class NotFound(BackendError):
    """The cache or group does not exist (deleted, evicted, expired, or never made)."""


class QuotaExceeded(BackendError):
    """The quota of its kind is reached and nothing may be evicted."""


class InvalidSpec(BackendError):
    """The request cannot be satisfied as written; the message starts with the property.

    ``problem`` is the engine's refusal when one property is to blame: ``check`` reports its
    ``property`` and ``reason`` (``None`` when no single property is)."""

    def __init__(
        self, message: str, *, problem: InvalidProperty | None = None, code: str | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.problem = problem


class Conflict(BackendError):
    """The resource is busy (a build is running); the same request may succeed later."""


class BuildFailed(BackendError):
    """A build started and failed; the cache is left Failed (or, for a rebuild, as it was)."""


class StoreError(BackendError):
    """The local store cannot be written (disk full, read-only); state is left as it was."""


class BackendRegistryError(BackendError):
    """A registry could not give the images; the message names image and registry."""


class BackendImageNotFound(BackendRegistryError):
    pass


class BackendRegistryAuthError(BackendRegistryError):
    pass


class BackendRegistryUnavailable(BackendRegistryError):
    """The registry did not answer in time, or kept failing (5xx, throttling)."""


class BackendRegistryContentError(BackendRegistryError):
    """The registry answered with something unusable: malformed, unsafe or wrong content."""


_REGISTRY_KINDS: list[tuple[type[RegistryError], type[BackendRegistryError]]] = [
    (ImageNotFound, BackendImageNotFound),
    (AuthenticationError, BackendRegistryAuthError),
    (RegistryUnavailable, BackendRegistryUnavailable),
    (DigestMismatch, BackendRegistryContentError),
    (MalformedManifest, BackendRegistryContentError),
]


def from_registry(what: str, err: RegistryError) -> BackendRegistryError:
    """The backend error for a registry client error, its message prefixed by ``what``."""
    kind = next((ours for theirs, ours in _REGISTRY_KINDS if isinstance(err, theirs)), None)
    return (kind or BackendRegistryError)(f"{what}: {err}")


class Usage(BaseModel):
    """Caches per kind, against the quotas (ECI's ListUsage)."""

    quota: Quota
    manual: int
    auto: int

    @classmethod
    def of(cls, quota: Quota, caches: Iterable[CacheRecord]) -> Usage:
        kinds = [c.kind for c in caches]
        return cls(
            quota=quota, manual=kinds.count(CacheKind.MANUAL), auto=kinds.count(CacheKind.AUTO)
        )


class GcReport(BaseModel):
    expired: list[str]  # "id (reason)"
    failed: list[str]  # "id (failure)"
    blobs_removed: int
    bytes_freed: int  # blobs' and unpacked layers' bytes
    dry_run: bool
    layers_removed: int = 0  # unpacked layers no cache holds and no group runs on
    files_removed: int = 0  # orphaned snapshot files and group directories


class BackendReader(Protocol):
    """What commands that only look use: every :class:`Backend`, and the local backend's
    read-only view (``local.view.LocalView``), which recovers, expires and writes nothing."""

    @property
    def region(self) -> str: ...

    def get_image_cache(self, cache_id: str) -> CacheRecord: ...

    def list_image_caches(self) -> list[CacheRecord]: ...

    def events(self, cache_id: str) -> list[CacheEvent]: ...

    def match(self, spec: ContainerGroupSpec) -> MatchResult: ...

    def get_container_group(self, group_id: str) -> ContainerGroupRecord: ...

    def list_container_groups(self) -> list[ContainerGroupRecord]: ...

    def usage(self) -> Usage: ...

    def gc(self, dry_run: bool = False, grace: timedelta = timedelta(minutes=10)) -> GcReport:
        """What gc deletes (``dry_run``: would delete). A read-only view only reports."""
        ...


class Backend(BackendReader, Protocol):
    """What the providers and the CLI use to make and change things; `local` and `alicloud`
    implement it."""

    def plan_image_cache(self, spec: ImageCacheSpec) -> BuildPlan: ...

    def create_image_cache(
        self,
        spec: ImageCacheSpec,
        *,
        client_token: str | None = None,
        progress: Progress | None = None,
        wait: bool = True,
    ) -> CacheRecord:
        """Create a cache. A ``client_token`` that already names a cache being built or ready
        returns that cache instead of making another (a retried or re-run create)."""
        ...

    def update_image_cache(
        self, cache_id: str, spec: ImageCacheSpec, *, wait: bool = True
    ) -> CacheRecord: ...

    def delete_image_cache(self, cache_id: str) -> None: ...

    def create_container_group(
        self, spec: ContainerGroupSpec, *, client_token: str | None = None
    ) -> ContainerGroupRecord:
        """Create a group. A ``client_token`` that already names a group made for the same
        request returns that group, as it is now (failed too), instead of making another (a
        re-run create); a group of the token made for another request gives way."""
        ...

    def delete_container_group(self, group_id: str) -> None: ...


@runtime_checkable
class KeepsContainerLogs(Protocol):
    """A backend (or view) that keeps what containers write (the local one; the cloud's logs
    are read with its own tools)."""

    def container_logs(self, group_id: str, container: str, tail: int | None = None) -> bytes:
        """A container's output, bounded: the most recent part is kept (``tail``: its last
        bytes only)."""
        ...
