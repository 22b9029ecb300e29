"""Small builders for engine records used across unit tests."""

from datetime import UTC, datetime, timedelta

from eci_imagecache.engine.models import (
    CacheKind,
    CacheRecord,
    CacheStatus,
    EvictionStrategy,
    SnapshotKind,
)
from eci_imagecache.engine.refs import parse_image_ref

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def record(
    cache_id: str,
    images: list[str],
    *,
    size: int = 20,
    created: timedelta = timedelta(0),
    status: CacheStatus = CacheStatus.READY,
    snapshot: SnapshotKind = SnapshotKind.STANDARD,
    kind: CacheKind = CacheKind.MANUAL,
    eviction: EvictionStrategy = EvictionStrategy.NEVER,
    region: str = "local",
    last_used: timedelta | None = None,
    retention_days: int | None = None,
) -> CacheRecord:
    return CacheRecord(
        id=cache_id,
        name=f"cache-{cache_id}",
        kind=kind,
        region=region,
        images=[parse_image_ref(i) for i in images],
        size_gib=size,
        status=status,
        snapshot=snapshot,
        eviction=eviction,
        retention_days=retention_days,
        created_at=T0 + created,
        last_used_at=None if last_used is None else T0 + last_used,
    )
