"""What the ECI API answers, read into our records: tolerant of what the reference allows.

The names and meanings come from the official SDK's response models and their docstrings
(``DescribeImageCachesResponseBodyImageCaches``, the container groups' ``Events``,
``ListUsageResponseBody.attributes``). Anything the API may reasonably send (another letter
case, a fractional progress, milliseconds in a time, a status added later) is read, never
raised on; a cache that still cannot be read is left out of a listing with a warning, so one
odd cache never hides the others.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from ...engine.lifecycle import AUTO_CACHE_PREFIX
from ...engine.matcher import score
from ...engine.models import (
    BASE_EPHEMERAL_STORAGE_GIB,
    CacheEvent,
    CacheKind,
    CacheRecord,
    CacheStatus,
    ContainerGroupRecord,
    ContainerStatus,
    EvictionStrategy,
    GroupStatus,
    SnapshotKind,
)
from ...engine.refs import ImageRefError, parse_image_ref

log = logging.getLogger("eci_imagecache.alicloud")

# DescribeImageCaches' documented states; Preparing comes before Creating.
CACHE_STATUS = {
    "preparing": CacheStatus.CREATING,
    "creating": CacheStatus.CREATING,
    "ready": CacheStatus.READY,
    "failed": CacheStatus.FAILED,
    "updating": CacheStatus.UPDATING,
    "updatefailed": CacheStatus.UPDATE_FAILED,
}
# DescribeContainerGroups' documented states, folded into what a deploy waits for.
GROUP_STATUS = {
    "pending": GroupStatus.PENDING,
    "scheduling": GroupStatus.PENDING,
    "restarting": GroupStatus.PENDING,
    "updating": GroupStatus.PENDING,
    "running": GroupStatus.RUNNING,
    "succeeded": GroupStatus.SUCCEEDED,
    "failed": GroupStatus.FAILED,
    "schedulefailed": GroupStatus.FAILED,
    "terminating": GroupStatus.FAILED,
    "expired": GroupStatus.FAILED,
}

# The image-cache events ECI reports on a container group ("Custom events of ECI": reason,
# type, message). The message names the cache by its id.
HIT_REASON = "SuccessfulHitImageCache"
AUTO_CREATED_REASON = "ImageCacheAutoCreated"
MISSED_REASON = "ImageCacheMissed"
_CACHE_ID = re.compile(r"\bimc-[0-9A-Za-z]+")


class Unreadable(ValueError):
    """An answer that lacks what a record needs (an id): the item is skipped."""


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 as the API writes it: ``Z`` or an offset, with or without milliseconds."""
    if not value or not isinstance(value, str):
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_progress(value: Any) -> int:
    """``"37.5%"``, ``"100%"``, ``50`` -> a whole percentage in 0..100."""
    try:
        number = float(str(value or "0").strip().rstrip("%") or 0)
    except ValueError:
        return 0
    return max(0, min(100, int(number)))


def parse_eviction(value: Any) -> EvictionStrategy:
    return (
        EvictionStrategy.LRU
        if str(value or "").strip().upper() == "LRU"
        else EvictionStrategy.NEVER
    )


def cache_status(value: Any) -> CacheStatus:
    return CACHE_STATUS.get(str(value or "").strip().lower(), CacheStatus.UNKNOWN)


def cache_kind(name: str, container_group_id: str | None) -> CacheKind:
    """Automatic caches are named after the instance that made them, and the API reports
    that instance as the cache's ContainerGroupId: both must agree. A manual cache whose name
    only looks automatic stays manual (its ContainerGroupId is its build instance)."""
    if container_group_id and name == f"{AUTO_CACHE_PREFIX}{container_group_id}":
        return CacheKind.AUTO
    return CacheKind.MANUAL


def cache_record(item: dict[str, Any], region: str) -> CacheRecord:
    """One ``ImageCaches`` entry (as the SDK model's ``to_map`` gives it)."""
    cache_id = item.get("ImageCacheId")
    if not cache_id:
        raise Unreadable("an image cache without an ImageCacheId")
    status = cache_status(item.get("Status"))
    flash_id, standard_id = item.get("FlashSnapshotId") or "", item.get("SnapshotId") or ""
    snapshot = (
        SnapshotKind.STANDARD
        if standard_id
        else SnapshotKind.LOCAL
        if flash_id
        else SnapshotKind.NONE
    )
    name = str(item.get("ImageCacheName") or "")
    kind = cache_kind(name, item.get("ContainerGroupId"))
    created = parse_time(item.get("CreationTime"))
    expiry = parse_time(item.get("ExpireDateTime"))
    retention = None
    if expiry and created and kind == CacheKind.MANUAL:
        retention = max(1, round((expiry - created).total_seconds() / 86400))
    images = []
    for image in item.get("Images") or []:
        try:
            images.append(parse_image_ref(image))
        except ImageRefError:
            log.warning("image cache %s: an image reference could not be read", cache_id)
    failure = None
    if status in (CacheStatus.FAILED, CacheStatus.UPDATE_FAILED, CacheStatus.UNKNOWN):
        warnings = [e for e in item.get("Events") or [] if e.get("Type") == "Warning"]
        failure = (
            f"status {str(item.get('Status'))[:40]!r} is not one this version knows"
            if status == CacheStatus.UNKNOWN
            else warnings[-1].get("Message")
            if warnings
            else f"the cache is {status.value}"
        )
    tags = item.get("Tags")
    return CacheRecord(
        id=str(cache_id),
        name=name,
        kind=kind,
        region=item.get("RegionId") or region,
        images=images,
        size_gib=_int(item.get("ImageCacheSize")),
        status=status,
        snapshot=snapshot,
        eviction=EvictionStrategy.LRU
        if kind == CacheKind.AUTO
        else parse_eviction(item.get("EliminationStrategy")),
        retention_days=retention,
        created_at=created or datetime.now(UTC),
        last_used_at=parse_time(item.get("LastMatchedTime")),
        progress=parse_progress(item.get("Progress")),
        failure=failure,
        instant=bool(flash_id),
        snapshot_id=standard_id or flash_id or None,
        tags=None
        if tags is None
        else {str(t.get("Key")): str(t.get("Value") or "") for t in tags if t.get("Key")},
        resource_group_id=item.get("ResourceGroupId") or None,
    )


def cache_events(item: dict[str, Any]) -> list[CacheEvent]:
    return [
        CacheEvent(
            at=parse_time(e.get("LastTimestamp"))
            or parse_time(e.get("FirstTimestamp"))
            or datetime.now(UTC),
            kind=e.get("Type") or "Normal",
            reason=e.get("Reason") or "",
            message=e.get("Message") or "",
        )
        for e in item.get("Events") or []
    ]


def cache_records(items: list[dict[str, Any]], region: str) -> list[CacheRecord]:
    """Every readable cache; one that cannot be read is skipped with a warning."""
    records = []
    for item in items:
        try:
            records.append(cache_record(item, region))
        except (Unreadable, ValueError, TypeError) as err:
            log.warning(
                "image cache %s skipped: %s",
                str(item.get("ImageCacheId") or "?")[:64],
                type(err).__name__,
            )
    return records


def cache_decision(events: list[dict[str, Any]]) -> dict[str, Any]:
    """What the group's image-cache events say: the cache hit, or the one made for it."""
    found: dict[str, Any] = {}
    for event in events:
        reason, message = event.get("Reason") or "", event.get("Message") or ""
        ids = _CACHE_ID.findall(message)
        if reason == HIT_REASON and ids:
            found.update(cache_id=ids[0], match_reason=message)
        elif reason == AUTO_CREATED_REASON and ids:
            found.update(auto_created_cache_id=ids[0], match_reason=message)
        elif reason == MISSED_REASON and "cache_id" not in found:
            found.setdefault("match_reason", message)
    return found


# A container's documented states (``...ContainersCurrentState.State``), by their lower case.
CONTAINER_STATES = {s.lower(): s for s in ("Waiting", "Running", "Terminated")}


def container_state(value: Any) -> str:
    """A documented state in its documented spelling; none yet is Waiting; anything else
    (a state added later) is Unknown, never taken for one that ended."""
    text = str(value or "").strip().lower()
    return CONTAINER_STATES.get(text, "Unknown") if text else "Waiting"


def _optional_int(value: Any) -> int | None:
    try:
        return int(float(value)) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def container_status(item: dict[str, Any], init: bool) -> ContainerStatus:
    """One ``Containers`` / ``InitContainers`` entry: its ``CurrentState`` (State, ExitCode,
    StartTime, FinishTime, Reason, Message, Signal), ``PreviousState`` and ``RestartCount``, as
    the local backend presents a container. An exit code is read only where the state says
    the container ended (the API may send 0 for one still running): from ``CurrentState`` when
    Terminated, or from ``PreviousState`` while it waits to be restarted."""
    current, previous = (
        value if isinstance(value := item.get(key), dict) else {}
        for key in ("CurrentState", "PreviousState")
    )
    state = container_state(current.get("State"))
    exit_code = None
    if state == "Terminated":
        exit_code = _optional_int(current.get("ExitCode"))
    elif state == "Waiting" and container_state(previous.get("State")) == "Terminated":
        exit_code = _optional_int(previous.get("ExitCode"))
    reason = ": ".join(
        str(part).strip()
        for part in (current.get("Reason"), current.get("Message"))
        if part and str(part).strip()
    )
    signal = _optional_int(current.get("Signal"))
    if not reason and state == "Terminated" and signal:
        reason = f"killed by signal {signal}"
    return ContainerStatus(
        name=str(item.get("Name") or ""),
        init=init,
        state=state,
        exit_code=exit_code,
        restart_count=max(0, _int(item.get("RestartCount"))),
        started_at=parse_time(current.get("StartTime")),
        finished_at=parse_time(current.get("FinishTime")),
        reason=reason,
    )


def group_record(item: dict[str, Any], region: str) -> ContainerGroupRecord:
    group_id = item.get("ContainerGroupId")
    if not group_id:
        raise Unreadable("a container group without a ContainerGroupId")
    images = []
    for c in [*(item.get("InitContainers") or []), *(item.get("Containers") or [])]:
        try:
            images.append(parse_image_ref(c.get("Image") or ""))
        except ImageRefError:
            log.warning("container group %s: an image reference could not be read", group_id)
    return ContainerGroupRecord(
        id=str(group_id),
        name=str(item.get("ContainerGroupName") or ""),
        region=item.get("RegionId") or region,
        status=GROUP_STATUS.get(str(item.get("Status") or "").lower(), GroupStatus.PENDING),
        images=sorted(set(images)),
        created_at=parse_time(item.get("CreationTime")) or datetime.now(UTC),
        ephemeral_storage_gib=BASE_EPHEMERAL_STORAGE_GIB + _int(item.get("EphemeralStorage")),
        # Init containers first, as they run (and as the local backend lists them).
        containers=[container_status(c, init=True) for c in item.get("InitContainers") or [] if c]
        + [container_status(c, init=False) for c in item.get("Containers") or [] if c],
        **cache_decision(item.get("Events") or []),
    )


def match_degree(cache: CacheRecord, record: ContainerGroupRecord) -> str:
    """The cloud names the cache it used, not how well it matched: judged from the images."""
    exact, same = score(cache.images, record.images)
    return "exact" if exact == len(record.images) else "partial" if exact + same else "none"


def usage_counts(attributes: dict[str, Any]) -> dict[str, int]:
    """ListUsage's ``Attributes``: the documented Max*/Used* names."""
    return {
        "max_manual": _int(attributes.get("MaxImageCacheCount")),
        "max_auto": _int(attributes.get("MaxAutoImageCacheCount")),
        "manual": _int(attributes.get("UsedImageCacheCount")),
        "auto": _int(attributes.get("UsedAutoImageCacheCount")),
    }


def _int(value: Any) -> int:
    try:
        return int(float(value or 0))
    except (TypeError, ValueError):
        return 0
