"""Lifecycle policy: retention expiry, automatic-cache expiry, quotas and LRU eviction.

All functions take ``now`` explicitly so callers (and tests) control the clock.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from .errors import EngineError
from .models import (
    AUTO_CACHE_PREFIX,
    BASE_EPHEMERAL_STORAGE_GIB,
    CacheKind,
    CacheRecord,
    CacheStatus,
    EvictionStrategy,
    Quota,
)

AUTO_UNUSED_TTL = timedelta(days=7)  # an automatic cache never used is deleted after 7 days
AUTO_IDLE_TTL = timedelta(days=30)  # once used, after 30 days without use


class QuotaReached(EngineError):
    """No room for another cache of this kind, and nothing may be evicted (a backend reports
    it as its own ``QuotaExceeded``)."""


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


def expired(record: CacheRecord, now: datetime) -> bool:
    """Past its expiry: gone for every read, though deleted only by the next write."""
    at = expires_at(record)
    return at is not None and at <= now


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


def make_room(
    records: Sequence[CacheRecord],
    kind: CacheKind,
    quota: Quota,
    in_use: Collection[str] = frozenset(),
) -> list[CacheRecord]:
    """The caches to evict so that one more cache of ``kind`` fits its quota.

    ``in_use`` are the ids of caches that container groups name: never evicted. Returns an
    empty list when there is room. Raises :class:`QuotaReached`, naming the quota and what
    would free room, when the caches that would have to go are not all evictable.
    """
    same_kind = [r for r in records if r.kind == kind]
    limit = quota.limit(kind)
    excess = len(same_kind) + 1 - limit
    if excess <= 0:
        return []
    victims = [r for r in lru_order(same_kind) if evictable(r) and r.id not in in_use][:excess]
    if len(victims) < excess:
        raise QuotaReached(
            f"quota of {limit} {kind.value} image caches reached ({len(same_kind)} exist) and "
            f"{'none' if not victims else 'not enough'} of them can be evicted now; "
            + _room_advice(same_kind, in_use)
        )
    return victims


def _room_advice(caches: Sequence[CacheRecord], in_use: Collection[str]) -> str:
    """What would free room, from why the LRU caches cannot go now."""
    lru = [r for r in caches if r.kind == CacheKind.AUTO or r.eviction == EvictionStrategy.LRU]
    building = [r for r in lru if r.status in (CacheStatus.CREATING, CacheStatus.UPDATING)]
    used = [r for r in lru if r.id in in_use and r not in building]
    advice = []
    if building:
        advice.append(f"{len(building)} LRU cache(s) being built: retry once they are done")
    if used:
        advice.append(f"{len(used)} LRU cache(s) used by container groups: delete those groups")
    choices = ["delete a cache"]
    if len(lru) < len(caches):
        choices.append("set eviction to LRU on one")
    choices.append("ask for a larger quota")
    advice.append(", ".join(choices[:-1]) + (", or " if len(choices) > 2 else " or ") + choices[-1])
    return "; ".join(advice)


def auto_cache_name(instance_id: str) -> str:
    return f"{AUTO_CACHE_PREFIX}{instance_id}"


def auto_cache_size_gib(extra_ephemeral_storage_gib: int) -> int:
    return BASE_EPHEMERAL_STORAGE_GIB + extra_ephemeral_storage_gib
