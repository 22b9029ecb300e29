"""The interface every backend implements, mirroring the ECI image-cache API."""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel

from ..engine.matcher import MatchResult
from ..engine.models import (
    CacheEvent,
    CacheRecord,
    ContainerGroupRecord,
    ContainerGroupSpec,
    ImageCacheSpec,
    Quota,
)
from ..engine.planner import BuildPlan


class BackendError(RuntimeError):
    """An operation failed; the message is safe to show (it never holds a secret)."""


class NotFound(BackendError):
    pass


class Usage(BaseModel):
    """Caches per kind, against the quotas (ECI's ListUsage)."""

    quota: Quota
    manual: int
    auto: int


class Backend(Protocol):
    """What the providers and the CLI use; `local` and `alicloud` implement it."""

    region: str

    def plan_image_cache(self, spec: ImageCacheSpec) -> BuildPlan: ...

    def create_image_cache(self, spec: ImageCacheSpec, **options: Any) -> CacheRecord: ...

    def get_image_cache(self, cache_id: str) -> CacheRecord: ...

    def list_image_caches(self) -> list[CacheRecord]: ...

    def events(self, cache_id: str) -> list[CacheEvent]: ...

    def update_image_cache(
        self, cache_id: str, spec: ImageCacheSpec, **options: Any
    ) -> CacheRecord: ...

    def delete_image_cache(self, cache_id: str) -> None: ...

    def match(self, spec: ContainerGroupSpec) -> MatchResult: ...

    def create_container_group(self, spec: ContainerGroupSpec) -> ContainerGroupRecord: ...

    def get_container_group(self, group_id: str) -> ContainerGroupRecord: ...

    def list_container_groups(self) -> list[ContainerGroupRecord]: ...

    def delete_container_group(self, group_id: str) -> None: ...

    def usage(self) -> Usage: ...

    def gc(self, dry_run: bool = False, **options: Any) -> Any: ...
