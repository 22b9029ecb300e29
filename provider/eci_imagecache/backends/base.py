"""The interface every backend implements, mirroring the ECI image-cache API."""

from __future__ import annotations

from typing import Protocol

from ..engine.models import CacheRecord, ImageCacheSpec, Quota


class BackendError(RuntimeError):
    """An operation failed; the message is safe to show (it never holds a secret)."""


class NotFound(BackendError):
    pass


class Usage(Protocol):
    quota: Quota
    manual: int
    auto: int


class Backend(Protocol):
    region: str

    def create_image_cache(self, spec: ImageCacheSpec) -> CacheRecord: ...

    def get_image_cache(self, cache_id: str) -> CacheRecord: ...

    def list_image_caches(self) -> list[CacheRecord]: ...

    def update_image_cache(self, cache_id: str, spec: ImageCacheSpec) -> CacheRecord: ...

    def delete_image_cache(self, cache_id: str) -> None: ...
