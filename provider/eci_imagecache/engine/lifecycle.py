"""Lifecycle policy: retention expiry, automatic-cache expiry, quotas and LRU eviction.

All functions take ``now`` explicitly so callers (and tests) control the clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from .models import (
    BASE_EPHEMERAL_STORAGE_GIB,
    CacheKind,
    CacheRecord,
    CacheStatus,
    EvictionStrategy,
    Quota,
)

AUTO_UNUSED_TTL = timedelta(days=7)  # an automatic cache never used is deleted after 7 days
AUTO_IDLE_TTL = timedelta(days=30)  # once used, after 30 days without use
AUTO_CACHE_PREFIX = "auto-create-for-"


class QuotaExceeded(RuntimeError):
    """No room for another cache of this kind, and nothing may be evicted."""


class Expiry(BaseModel):
    model_config = ConfigDict(frozen=True)

    cache_id: str
    at: datetime
    reason: str


def expires_at(record: CacheRecord) -> datetime | None:
    """When the cache is deleted if nothing else happens (None: kept until deleted)."""
    if record.kind == CacheKind.AUTO:
        if record.last_used_at is None:
            return record.created_at + AUTO_UNUSED_TTL
        return record.last_used_at + AUTO_IDLE_TTL
    if record.retention_days is not None:
        return record.created_at + timedelta(days=record.retention_days)
    return None


def expiry_reason(record: CacheRecord) -> str:
    if record.kind == CacheKind.AUTO:
        if record.last_used_at is None:
            return "automatic cache never used for 7 days"
        return "automatic cache unused for 30 days"
    return f"retention of {record.retention_days} days elapsed"


def due_for_deletion(records: Iterable[CacheRecord], now: datetime) -> list[Expiry]:
    """Caches whose expiry has passed, oldest expiry first."""
    due = []
    for record in records:
        at = expires_at(record)
        if at is not None and at <= now:
            due.append(Expiry(cache_id=record.id, at=at, reason=expiry_reason(record)))
    return sorted(due, key=lambda e: (e.at, e.cache_id))


def evictable(record: CacheRecord) -> bool:
    """Automatic caches are always LRU; manual ones only when they opted in. A cache being
    built or rebuilt is never taken from under its build."""
    if record.status in (CacheStatus.CREATING, CacheStatus.UPDATING):
        return False
    return record.kind == CacheKind.AUTO or record.eviction == EvictionStrategy.LRU


def lru_order(records: Iterable[CacheRecord]) -> list[CacheRecord]:
    """Least recently used first; a never-used cache counts as used when it was created."""
    return sorted(records, key=lambda r: (r.last_used_at or r.created_at, r.created_at, r.id))


def make_room(records: Sequence[CacheRecord], kind: CacheKind, quota: Quota) -> list[CacheRecord]:
    """The caches to evict so that one more cache of ``kind`` fits its quota.

    Returns an empty list when there is room. Raises :class:`QuotaExceeded`, naming the quota,
    when the caches that would have to go are not all evictable.
    """
    same_kind = [r for r in records if r.kind == kind]
    limit = quota.limit(kind)
    excess = len(same_kind) + 1 - limit
    if excess <= 0:
        return []
    victims = [r for r in lru_order(same_kind) if evictable(r)][:excess]
    if len(victims) < excess:
        raise QuotaExceeded(
            f"quota of {limit} {kind.value} image caches reached ({len(same_kind)} exist) and "
            f"{'none' if not victims else 'not enough'} of them allow LRU eviction; delete a "
            f"cache, set eviction to LRU on one, or ask for a larger quota"
        )
    return victims


def auto_cache_name(instance_id: str) -> str:
    return f"{AUTO_CACHE_PREFIX}{instance_id}"


def auto_cache_size_gib(extra_ephemeral_storage_gib: int) -> int:
    return BASE_EPHEMERAL_STORAGE_GIB + extra_ephemeral_storage_gib
