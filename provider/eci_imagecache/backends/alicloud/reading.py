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

from ...engine.matcher import score
from ...engine.models import (
    AUTO_CACHE_PREFIX,
    BASE_EPHEMERAL_STORAGE_GIB,
    CacheEvent,
    CacheKind,
    CacheRecord,
    CacheStatus,
    ContainerGroupRecord,
    ContainerGroupSpec,
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
    # Not in the SDK's list, but in the vendor's lifecycle page: Pending for 4 hours ends here.
    "startingfailed": GroupStatus.FAILED,
    "terminating": GroupStatus.FAILED,
    "expired": GroupStatus.FAILED,
}

# The image-cache events ECI reports on a container group ("Custom events of ECI": reason,
# type, message). The message names the cache by its id.
HIT_REASON = "SuccessfulHitImageCache"
AUTO_CREATED_REASON = "ImageCacheAutoCreated"
MISSED_REASON = "ImageCacheMissed"
# ImageCacheMissed is a Warning, yet never why a group is not running.
CACHE_EVENT_REASONS = frozenset({HIT_REASON, AUTO_CREATED_REASON, MISSED_REASON})
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


def _text(value: Any) -> str:
    return str(value).strip() if value is not None else ""


def group_address(item: dict[str, Any], containers: list[ContainerStatus]) -> str | None:
    """Where the group answers: its public IP (``InternetIp``, which it has with an EIP), else
    its private IP (``IntranetIp``), with the lowest port its containers declare
    (``Containers.Ports.Port``). As on the local backend, only once a container has started:
    the cloud gives the instance its IP when it is made, before anything listens on it."""
    if not any(c.started_at is not None or c.state == "Running" for c in containers):
        return None  # a container that ended without starting (Terminated, no StartTime) never ran
    ip = _text(item.get("InternetIp")) or _text(item.get("IntranetIp"))
    if not ip:
        return None
    ports = sorted(
        port
        for c in item.get("Containers") or []
        if isinstance(c, dict)
        for p in c.get("Ports") or []
        if isinstance(p, dict) and (port := _optional_int(p.get("Port")))
    )
    return f"{ip}:{ports[0]}" if ports else ip


def _latest_warning(events: list[dict[str, Any]]) -> str:
    """The newest Warning event other than the image-cache ones: ``Reason: Message``."""
    warnings = [
        (parse_time(e.get("LastTimestamp")) or parse_time(e.get("FirstTimestamp")), i, e)
        for i, e in enumerate(events)
        if isinstance(e, dict)
        and _text(e.get("Type")).lower() == "warning"
        and _text(e.get("Reason")) not in CACHE_EVENT_REASONS
    ]
    if not warnings:
        return ""
    oldest = datetime.min.replace(tzinfo=UTC)
    *_, event = max(warnings, key=lambda w: (w[0] or oldest, w[1]))
    return ": ".join(
        part for part in (_text(event.get("Reason")), _text(event.get("Message"))) if part
    )


def _container_trouble(containers: list[ContainerStatus]) -> str:
    """The first container (init containers first) that ended in failure, else the first one
    held waiting for a reason (an image that cannot be pulled, a crash loop)."""
    for c in containers:
        if c.state == "Terminated" and c.exit_code not in (None, 0):
            what = "init container" if c.init else "container"
            return f"{what} {c.name} exited with code {c.exit_code}" + (
                f" ({c.reason})" if c.reason else ""
            )
    for c in containers:
        if c.state == "Waiting" and c.reason:
            return f"{'init container' if c.init else 'container'} {c.name} is waiting: {c.reason}"
    return ""


def group_status_reason(
    wire_status: Any,
    status: GroupStatus,
    containers: list[ContainerStatus],
    events: list[dict[str, Any]],
) -> str:
    """Why a group is not running (empty while it runs or once it succeeded): a container that
    failed or waits, else the newest Warning event (``FailedScheduling``, ``NoStock``,
    ``OOMKilled``, ...). A status folded into Failed (ScheduleFailed, StartingFailed, Expired,
    Terminating) leads, since the group's status no longer says it."""
    if status in (GroupStatus.RUNNING, GroupStatus.SUCCEEDED):
        return ""
    why = _container_trouble(containers) or _latest_warning(events)
    raw = _text(wire_status)[:40]
    if status == GroupStatus.FAILED and raw.lower() != "failed":
        return f"{raw}: {why}" if why else f"the instance is {raw or 'failed'}"
    if status == GroupStatus.FAILED and not why:
        return "the instance failed (the API gave no reason)"
    return why


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
    status = GROUP_STATUS.get(_text(item.get("Status")).lower(), GroupStatus.PENDING)
    # Init containers first, as they run (and as the local backend lists them).
    containers = [container_status(c, init=True) for c in item.get("InitContainers") or [] if c] + [
        container_status(c, init=False) for c in item.get("Containers") or [] if c
    ]
    events = item.get("Events") or []
    decision = cache_decision(events)
    return ContainerGroupRecord(
        id=str(group_id),
        name=str(item.get("ContainerGroupName") or ""),
        region=item.get("RegionId") or region,
        status=status,
        images=sorted(set(images)),
        created_at=parse_time(item.get("CreationTime")) or datetime.now(UTC),
        ephemeral_storage_gib=BASE_EPHEMERAL_STORAGE_GIB + _int(item.get("EphemeralStorage")),
        containers=containers,
        status_reason=group_status_reason(item.get("Status"), status, containers, events),
        address=group_address(item, containers),
        declared=group_declaration(item, decision.get("cache_id")),
        **decision,
    )


def _container_declaration(c: dict[str, Any]) -> dict[str, Any]:
    env = {e["Key"]: e.get("Value") or "" for e in c.get("EnvironmentVars") or [] if e.get("Key")}
    return {
        "name": c.get("Name"),
        "image": c.get("Image"),
        "image_pull_policy": c.get("ImagePullPolicy") or None,
        "command": c.get("Commands") or None,
        "args": c.get("Args") or None,
        "env": env or None,
        "ports": sorted({_int(p.get("Port")) for p in c.get("Ports") or [] if p.get("Port")})
        or None,
        "cpu": c.get("Cpu") or None,
        "memory_gib": c.get("Memory") or None,
        "working_dir": c.get("WorkingDir") or None,
    }


def group_declaration(item: dict[str, Any], cache_id: str | None) -> dict[str, Any] | None:
    """What the group reads back as declared (``pulumi import``), from what the API reports:
    its containers, restart policy, resources, storage and placement, and the cache it uses,
    named explicitly (the API does not say how it was chosen). None when that is no valid spec
    (e.g. a field the API reports in a form ECI does not accept on create)."""
    values: dict[str, Any] = {
        "name": item.get("ContainerGroupName"),
        "containers": [_container_declaration(c) for c in item.get("Containers") or [] if c],
        "init_containers": [
            _container_declaration(c) for c in item.get("InitContainers") or [] if c
        ],
        "restart_policy": item.get("RestartPolicy") or None,
        "cpu": item.get("Cpu") or None,
        "memory_gib": item.get("Memory") or None,
        "extra_ephemeral_storage_gib": _int(item.get("EphemeralStorage")) or None,
        "vswitch_id": item.get("VSwitchId") or None,
        "security_group_id": item.get("SecurityGroupId") or None,
        "resource_group_id": item.get("ResourceGroupId") or None,
        "zone_id": item.get("ZoneId") or None,
        "cache": "explicit" if cache_id else "none",
        "cache_id": cache_id,
    }
    for key in ("containers", "init_containers"):
        values[key] = [{k: v for k, v in c.items() if v is not None} for c in values[key]]
    try:
        spec = ContainerGroupSpec(**{k: v for k, v in values.items() if v is not None})
    except ValueError:  # pydantic's ValidationError and ImageRefError among them
        return None
    return spec.declaration()


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
