"""The local backend: image caches on this machine, state in SQLite."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from platformdirs import user_data_dir

from ...engine.lifecycle import make_room
from ...engine.models import (
    CacheEvent,
    CacheKind,
    CacheRecord,
    CacheStatus,
    ImageCacheSpec,
    Quota,
)
from ..base import NotFound
from .store import Store

Clock = Callable[[], datetime]
LOCAL_REGION = "local"


def default_data_dir() -> Path:
    """``$ECI_IMAGECACHE_HOME`` or the per-user data directory."""
    return Path(os.environ.get("ECI_IMAGECACHE_HOME") or user_data_dir("eci-imagecache"))


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(10)}"


class LocalBackend:
    def __init__(
        self,
        data_dir: Path | None = None,
        quota: Quota | None = None,
        clock: Clock = utc_now,
        region: str = LOCAL_REGION,
    ) -> None:
        self.data_dir = data_dir or default_data_dir()
        self.store = Store(self.data_dir / "state.db")
        self.quota = quota or Quota()
        self.clock = clock
        self.region = region

    def _event(self, db, cache_id: str, reason: str, message: str, kind: str = "Normal") -> None:
        self.store.add_event(
            db, cache_id, CacheEvent(at=self.clock(), kind=kind, reason=reason, message=message)
        )

    def create_image_cache(self, spec: ImageCacheSpec) -> CacheRecord:
        now = self.clock()
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
            created_at=now,
            instant=spec.instant,
            layer_reuse=spec.layer_reuse,
            credential_servers=[c.server for c in spec.credentials],
        )
        with self.store.transaction() as db:
            for victim in make_room(self.store.list_caches(db), CacheKind.MANUAL, self.quota):
                self.store.delete_cache(db, victim.id)
            self.store.put_cache(db, record)
            self._event(db, record.id, "Created", f"image cache {spec.name} created")
        return record

    def get_image_cache(self, cache_id: str) -> CacheRecord:
        with self.store.transaction() as db:
            record = self.store.get_cache(db, cache_id)
        if record is None:
            raise NotFound(f"image cache {cache_id} not found")
        return record

    def list_image_caches(self) -> list[CacheRecord]:
        with self.store.transaction() as db:
            return self.store.list_caches(db)

    def update_image_cache(self, cache_id: str, spec: ImageCacheSpec) -> CacheRecord:
        with self.store.transaction() as db:
            record = self.store.get_cache(db, cache_id)
            if record is None:
                raise NotFound(f"image cache {cache_id} not found")
            record = record.model_copy(
                update={
                    "name": spec.name,
                    "images": spec.images,
                    "size_gib": spec.size_gib,
                    "eviction": spec.eviction,
                    "retention_days": spec.retention_days,
                    "instant": spec.instant,
                    "layer_reuse": spec.layer_reuse,
                    "credential_servers": [c.server for c in spec.credentials],
                }
            )
            self.store.put_cache(db, record)
            self._event(db, cache_id, "Updated", f"image cache {spec.name} updated")
        return record

    def delete_image_cache(self, cache_id: str) -> None:
        with self.store.transaction() as db:
            self.store.delete_cache(db, cache_id)
