"""The ECI OpenAPI's wire shapes for image caches and container groups, both ways.

The emulator writes these shapes from local records; the alicloud backend reads them (as the
official SDK's models give them) back into records. One module, so both sides agree.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from ..engine.lifecycle import AUTO_CACHE_PREFIX, expires_at
from ..engine.models import (
    BASE_EPHEMERAL_STORAGE_GIB,
    CacheEvent,
    CacheKind,
    CacheRecord,
    CacheStatus,
    ContainerGroupRecord,
    EvictionStrategy,
    GroupStatus,
    SnapshotKind,
)
from ..engine.refs import parse_image_ref

API_VERSION = "2018-08-08"
STATUS_TO_API = {
    CacheStatus.CREATING: "Creating",
    CacheStatus.READY: "Ready",
    CacheStatus.FAILED: "Failed",
    CacheStatus.UPDATING: "Updating",
}
STATUS_FROM_API = {v: k for k, v in STATUS_TO_API.items()} | {"Preparing": CacheStatus.CREATING}
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

# Container-group events that carry the cache decision and the image preparation.
HIT_REASON = "SuccessfulHitImageCache"
AUTO_CREATED_REASON = "ImageCacheAutoCreated"
PREPARED_REASON = "ImagesPrepared"
MISS_REASON = "ImageCacheMissed"


def api_time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime(TIME_FORMAT) if value else None


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.strptime(value, TIME_FORMAT).replace(tzinfo=UTC)


def cache_to_api(record: CacheRecord, events: list[CacheEvent], region: str) -> dict[str, Any]:
    """One entry of DescribeImageCaches' ``ImageCaches``."""
    return {
        "ImageCacheId": record.id,
        "ImageCacheName": record.name,
        "ImageCacheSize": record.size_gib,
        "Images": [str(i) for i in record.images],
        "Status": STATUS_TO_API[record.status],
        "Progress": f"{record.progress}%",
        "SnapshotId": record.snapshot_id if record.snapshot == SnapshotKind.STANDARD else "",
        # An instant cache served by its local snapshot shows that snapshot's id.
        "FlashSnapshotId": f"flash-{record.id}" if record.snapshot == SnapshotKind.LOCAL else "",
        "CreationTime": api_time(record.created_at),
        "ExpireDateTime": api_time(expires_at(record)),
        "LastMatchedTime": api_time(record.last_used_at),
        "EliminationStrategy": record.eviction.value,
        "RegionId": region,
        "ContainerGroupId": "",
        "Tags": [],
        "Events": [
            {
                "Type": e.kind,
                "Reason": e.reason,
                "Message": e.message,
                "Name": record.id,
                "Count": 1,
                "FirstTimestamp": api_time(e.at),
                "LastTimestamp": api_time(e.at),
            }
            for e in events
        ],
    }


def cache_from_api(item: dict[str, Any], region: str) -> CacheRecord:
    status = STATUS_FROM_API.get(item.get("Status") or "", CacheStatus.FAILED)
    flash = bool(item.get("FlashSnapshotId"))
    standard = bool(item.get("SnapshotId"))
    snapshot = (
        SnapshotKind.STANDARD if standard else SnapshotKind.LOCAL if flash else SnapshotKind.NONE
    )
    name = item.get("ImageCacheName") or ""
    created = parse_time(item.get("CreationTime")) or datetime.now(UTC)
    expiry = parse_time(item.get("ExpireDateTime"))
    kind = CacheKind.AUTO if name.startswith(AUTO_CACHE_PREFIX) else CacheKind.MANUAL
    retention = None
    if expiry and kind == CacheKind.MANUAL:
        retention = max(1, round((expiry - created).total_seconds() / 86400))
    failure = None
    if status == CacheStatus.FAILED:
        warnings = [e for e in item.get("Events") or [] if e.get("Type") == "Warning"]
        failure = warnings[-1].get("Message") if warnings else "the cache failed"
    return CacheRecord(
        id=item["ImageCacheId"],
        name=name,
        kind=kind,
        region=item.get("RegionId") or region,
        images=[parse_image_ref(i) for i in item.get("Images") or []],
        size_gib=int(item.get("ImageCacheSize") or 0),
        status=status,
        snapshot=snapshot,
        eviction=EvictionStrategy(item.get("EliminationStrategy") or ""),
        retention_days=retention,
        created_at=created,
        last_used_at=parse_time(item.get("LastMatchedTime")),
        progress=int(str(item.get("Progress") or "0").rstrip("%") or 0),
        failure=failure,
        instant=flash,
        # The snapshot a group names to use this cache: the standard one, else the flash one.
        snapshot_id=item.get("SnapshotId") or item.get("FlashSnapshotId") or None,
    )


def cache_events_from_api(item: dict[str, Any]) -> list[CacheEvent]:
    return [
        CacheEvent(
            at=parse_time(e.get("LastTimestamp")) or datetime.now(UTC),
            kind=e.get("Type") or "Normal",
            reason=e.get("Reason") or "",
            message=e.get("Message") or "",
        )
        for e in item.get("Events") or []
    ]


def group_to_api(record: ContainerGroupRecord, region: str) -> dict[str, Any]:
    """One entry of DescribeContainerGroups' ``ContainerGroups``."""
    at = api_time(record.created_at)
    events = []

    def event(reason: str, message: str) -> None:
        events.append(
            {
                "Type": "Normal",
                "Reason": reason,
                "Message": message,
                "Count": 1,
                "Name": record.id,
                "FirstTimestamp": at,
                "LastTimestamp": at,
            }
        )

    if record.cache_id:
        event(
            HIT_REASON,
            f"Successfully hit image cache {record.cache_id} "
            f"[degree={record.match_degree}]: {record.match_reason}",
        )
    elif record.auto_created_cache_id:
        event(
            AUTO_CREATED_REASON,
            f"Created image cache {record.auto_created_cache_id} "
            f"automatically: {record.match_reason}",
        )
    else:
        event(MISS_REASON, record.match_reason or "no image cache used")
    event(
        PREPARED_REASON,
        f"fetched={record.bytes_fetched} from_cache={record.bytes_from_cache} "
        f"seconds={record.preparation_seconds}",
    )
    return {
        "ContainerGroupId": record.id,
        "ContainerGroupName": record.name,
        "RegionId": region,
        "Status": record.status.value,
        "CreationTime": at,
        "EphemeralStorage": record.ephemeral_storage_gib - BASE_EPHEMERAL_STORAGE_GIB,
        "Containers": [
            {"Name": f"c{i}", "Image": str(image)} for i, image in enumerate(record.images)
        ],
        "Events": events,
    }


_HIT = re.compile(r"hit image cache (\S+) \[degree=(\w+)\]: (.*)$")
_AUTO = re.compile(r"Created image cache (\S+) automatically: (.*)$")
_PREPARED = re.compile(r"fetched=(\d+) from_cache=(\d+) seconds=([\d.]+)")


def group_from_api(item: dict[str, Any], region: str) -> ContainerGroupRecord:
    """A group record; the cache decision comes from the group's events when the API has them."""
    fields: dict[str, Any] = {}
    for e in item.get("Events") or []:
        message = e.get("Message") or ""
        if e.get("Reason") == HIT_REASON and (m := _HIT.search(message)):
            fields.update(cache_id=m[1], match_degree=m[2], match_reason=m[3])
        elif e.get("Reason") == AUTO_CREATED_REASON and (m := _AUTO.search(message)):
            fields.update(auto_created_cache_id=m[1], match_reason=m[2])
        elif e.get("Reason") == MISS_REASON:
            fields.update(match_reason=message)
        elif e.get("Reason") == PREPARED_REASON and (m := _PREPARED.search(message)):
            fields.update(
                bytes_fetched=int(m[1]), bytes_from_cache=int(m[2]), preparation_seconds=float(m[3])
            )
    status = item.get("Status") or "Pending"
    return ContainerGroupRecord(
        id=item["ContainerGroupId"],
        name=item.get("ContainerGroupName") or "",
        region=item.get("RegionId") or region,
        status=GroupStatus(status)
        if status in GroupStatus._value2member_map_
        else GroupStatus.FAILED
        if status in ("Failed", "ScheduleFailed")
        else GroupStatus.PENDING,
        images=[parse_image_ref(c["Image"]) for c in item.get("Containers") or []],
        created_at=parse_time(item.get("CreationTime")) or datetime.now(UTC),
        ephemeral_storage_gib=BASE_EPHEMERAL_STORAGE_GIB + int(item.get("EphemeralStorage") or 0),
        **fields,
    )
