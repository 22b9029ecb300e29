"""The emulator's state, and ECI's answers built beside it (moto's ``models``).

What a cache or a group is lives in two places: the local backend's record (what really exists:
images, status, containers running) and the emulator's own store (``state``: what the cloud keeps
beside it that the backend does not model: tags, zone, resource group, the containers as they
were asked for, addresses). :class:`ImageCache` and :class:`ContainerGroup` join the two and
describe themselves in the SDK's response models; :class:`Region` holds the backend and the
store and applies the API's rules. The handlers in ``actions`` only read a request, call one
method here and return its answer.
"""

from __future__ import annotations

import hashlib
import ipaddress
from datetime import UTC, datetime
from typing import Any

from alibabacloud_eci20180808 import models as sdk
from pydantic import BaseModel, ConfigDict, Field

from ...engine.lifecycle import expires_at
from ...engine.matcher import score
from ...engine.models import (
    AUTO_CACHE_PREFIX,
    CacheEvent,
    CacheKind,
    CacheRecord,
    CacheStatus,
    ContainerGroupRecord,
    ImageCacheSpec,
    SnapshotKind,
)
from ..base import NotFound
from ..local.backend import LocalBackend
from . import errors
from .params import CacheFilter, CacheUpdate, GroupFilter, NewGroup, Page, complete
from .state import EmulatorState

UPDATABLE = (CacheStatus.READY, CacheStatus.UPDATE_FAILED)
# The image-cache events ECI reports on a container group ("Custom events of ECI").
SOURCE = "EciService"
# Where the emulator's groups get their addresses. The reference: IntranetIp is "the private IP
# address" (the instance's ENI in its vSwitch, given when the instance is made) and InternetIp
# "the public IP address" (its EIP, when it has one). A private range for the vSwitch, and the
# documentation range (RFC 5737, TEST-NET-3) for EIPs, which it cycles through.
PRIVATE_ADDRESSES = ipaddress.ip_network("172.16.0.0/12")
PUBLIC_ADDRESSES = ipaddress.ip_network("203.0.113.0/24")
# Every instance has 30 GiB of ephemeral storage; EphemeralStorage is what is asked beyond it.
INCLUDED_STORAGE_GIB = 30


def api_time(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else ""


class Kept(BaseModel):
    """What the emulator's store keeps of a cache or a group beside the backend's record (the
    store holds it as JSON; an absent record reads as the defaults)."""

    model_config = ConfigDict(extra="ignore")


class KeptCache(Kept):
    build_instance: str = ""  # the intermediate instance that builds a manual cache
    tags: dict[str, str] = Field(default_factory=dict)
    resource_group_id: str = ""
    zone_id: str | None = None
    standard_copies: int | None = None
    acr: list[dict[str, Any]] = Field(default_factory=list)
    insecure: list[str] = Field(default_factory=list)
    plain_http: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, cache_id: str, spec: ImageCacheSpec) -> KeptCache:
        """What is kept of a cache made from ``spec``."""
        digest = hashlib.sha256(cache_id.encode()).hexdigest()[:20]
        return cls(
            build_instance=f"eci-{digest}",
            tags=spec.tags,
            resource_group_id=spec.resource_group_id or "",
            zone_id=spec.zone_id,
            standard_copies=spec.standard_copies,
            acr=[a.model_dump() for a in spec.acr_registries],
            insecure=spec.insecure_registries,
            plain_http=spec.plain_http_registries,
        )


class KeptGroup(Kept):
    # The containers as the request gave them (the SDK's wire map), described back as asked.
    containers: list[dict[str, Any]] = Field(default_factory=list)
    init_containers: list[dict[str, Any]] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)
    zone_id: str = ""
    resource_group_id: str = ""
    eip: str = ""  # the EIP's id, "auto" for one created with the group
    restart_policy: str = "Always"
    cpu: float | None = None
    memory: float | None = None
    vswitch_id: str = ""
    security_group_id: str = ""
    intranet_ip: str = ""
    internet_ip: str = ""


# image caches -------------------------------------------------------------------------------


class ImageCache:
    """One image cache as ECI describes it."""

    def __init__(
        self, record: CacheRecord, kept: KeptCache, events: list[CacheEvent], region: str
    ) -> None:
        self.record = record
        self.kept = kept  # what the emulator's store keeps beside the record
        self.events = events
        self.region = region

    @property
    def instance(self) -> str:
        """The ContainerGroupId ECI shows: the instance that built a manual cache, or the one an
        automatic cache was made for (it is named auto-create-for-<instance>)."""
        if self.record.kind == CacheKind.AUTO:
            return self.record.name.removeprefix(AUTO_CACHE_PREFIX)
        return self.kept.build_instance

    def updated(self, change: CacheUpdate) -> ImageCacheSpec:
        """The spec of this cache once ``change`` is applied (UpdateImageCache)."""
        current, kept = self.record, self.kept

        def given(value: Any, unchanged: Any) -> Any:
            return unchanged if value is None else value

        return ImageCacheSpec(
            name=given(change.name, current.name),
            images=given(change.images, [str(i) for i in current.images]),
            size_gib=given(change.size_gib, current.size_gib),
            retention_days=given(change.retention_days, current.retention_days),
            eviction=given(change.eviction, current.eviction.value),
            instant=given(change.instant, current.instant),
            instant_copies=change.instant_copies,
            standard_copies=given(change.standard_copies, kept.standard_copies),
            layer_reuse=given(change.layer_reuse, current.layer_reuse),
            credentials=change.credentials,
            insecure_registries=kept.insecure,
            plain_http_registries=kept.plain_http,
            vswitch_id=change.vswitch_id,
            security_group_id=change.security_group_id,
            eip_instance_id=change.eip_instance_id,
            tags={**kept.tags, **change.tags},  # Tag adds tags (the reference)
            resource_group_id=given(change.resource_group_id, kept.resource_group_id or None),
            acr_registries=change.acr_registries or kept.acr,
        )

    def describe(self) -> sdk.DescribeImageCachesResponseBodyImageCaches:
        record = self.record
        E = sdk.DescribeImageCachesResponseBodyImageCachesEvents
        return complete(
            sdk.DescribeImageCachesResponseBodyImageCaches(
                container_group_id=self.instance,
                creation_time=api_time(record.created_at),
                elimination_strategy=record.eviction.value,
                events=[
                    E(
                        count=1,
                        first_timestamp=api_time(e.at),
                        last_timestamp=api_time(e.at),
                        message=e.message,
                        name=f"{record.id}.{i}",
                        reason=e.reason,
                        type=e.kind,
                    )
                    for i, e in enumerate(self.events)
                ],
                expire_date_time=api_time(expires_at(record)),
                # An instant cache served by its local snapshot shows that snapshot's id.
                flash_snapshot_id=f"s-flash-{record.id}"
                if record.snapshot == SnapshotKind.LOCAL
                else "",
                image_cache_id=record.id,
                image_cache_name=record.name,
                image_cache_size=record.size_gib,
                images=[str(i) for i in record.images],
                last_matched_time=api_time(record.last_used_at),
                progress=f"{record.progress}%",
                region_id=self.region,
                resource_group_id=self.kept.resource_group_id,
                snapshot_id=record.snapshot_id or ""
                if record.snapshot == SnapshotKind.STANDARD
                else "",
                status=record.status.value,
                tags=[
                    sdk.DescribeImageCachesResponseBodyImageCachesTags(key=k, value=v)
                    for k, v in sorted(self.kept.tags.items())
                ],
            )
        )


# container groups ---------------------------------------------------------------------------


class ContainerGroup:
    """One container group as ECI describes it."""

    ITEM = "DescribeContainerGroupsResponseBodyContainerGroups"

    def __init__(self, record: ContainerGroupRecord, kept: KeptGroup, region: str) -> None:
        self.record = record
        self.kept = kept  # what the emulator's store keeps beside the record
        self.region = region
        # What runs (the local backend's containers), by name.
        self.observed = {c.name: c for c in record.containers}

    def events(self) -> list[tuple[str, str, str]]:
        """(type, reason, message) of the group's events, as ECI words them: the image-cache
        ones, and a Warning when the group failed before any of its containers started."""
        return [*self._cache_events(), *self._failure_events()]

    def _failure_events(self) -> list[tuple[str, str, str]]:
        """A group whose containers could not be started at all (nothing to run, a layer that
        cannot be mounted): the containers say nothing, so ECI's pods tell it with a Warning
        event, "Failed" with "Error: ..." as the kubelet words it. A container that ran and
        failed is told by its own state (Terminated, ExitCode), not by an event."""
        record = self.record
        if record.status.value != "Failed" or any(
            c.started_at is not None or c.state != "Waiting" for c in record.containers
        ):
            return []
        return [("Warning", "Failed", f"Error: {record.status_reason or 'containers not started'}")]

    def _cache_events(self) -> list[tuple[str, str, str]]:
        record = self.record
        if record.cache_id:
            return [
                (
                    "Normal",
                    "SuccessfulHitImageCache",
                    f"[eci.imagecache]Successfully hit image cache {record.cache_id}, "
                    "eci will be scheduled with this image cache.",
                )
            ]
        if record.auto_created_cache_id:
            return [
                ("Warning", "ImageCacheMissed", "[eci.imagecache]Missed image cache."),
                (
                    "Normal",
                    "ImageCacheAutoCreated",
                    f"[eci.imagecache]Image cache {record.auto_created_cache_id} is auto created",
                ),
            ]
        return []

    # the containers, in ECI's words

    def _current_state(self, name: str, kind: str) -> Any:
        c = self.observed.get(name)
        if c is None:
            return None
        model = getattr(sdk, f"{self.ITEM}{kind}CurrentState")
        return model(
            state=c.state,
            exit_code=c.exit_code,
            start_time=api_time(c.started_at),
            finish_time=api_time(c.finished_at),
            reason=c.reason,
        )

    def _previous_state(self, name: str, kind: str) -> Any:
        """A container waiting to be restarted: how its last run ended."""
        c = self.observed.get(name)
        if c is None or c.state != "Waiting" or c.exit_code is None:
            return None
        model = getattr(sdk, f"{self.ITEM}{kind}PreviousState")
        return model(
            state="Terminated",
            exit_code=c.exit_code,
            start_time=api_time(c.started_at),
            finish_time=api_time(c.finished_at),
        )

    def _restarts(self, name: str) -> int:
        c = self.observed.get(name)
        return c.restart_count if c is not None else 0

    def _container(
        self, asked: dict[str, Any]
    ) -> sdk.DescribeContainerGroupsResponseBodyContainerGroupsContainers:
        name = asked.get("Name", "")
        return complete(
            sdk.DescribeContainerGroupsResponseBodyContainerGroupsContainers(
                name=name,
                image=asked.get("Image", ""),
                image_pull_policy=asked.get("ImagePullPolicy") or "IfNotPresent",
                commands=asked.get("Command") or [],
                args=asked.get("Arg") or [],
                cpu=asked.get("Cpu") or 0.0,
                memory=asked.get("Memory") or 0.0,
                ready=self.record.status.value == "Running",
                current_state=self._current_state(name, "Containers"),
                previous_state=self._previous_state(name, "Containers"),
                restart_count=self._restarts(name),
                ports=[
                    sdk.DescribeContainerGroupsResponseBodyContainerGroupsContainersPorts(
                        port=p.get("Port"), protocol=p.get("Protocol") or "TCP"
                    )
                    for p in asked.get("Port") or []
                ],
                environment_vars=[
                    sdk.DescribeContainerGroupsResponseBodyContainerGroupsContainersEnvironmentVars(
                        key=e.get("Key"), value=e.get("Value", "")
                    )
                    for e in asked.get("EnvironmentVar") or []
                ],
            )
        )

    def _init_container(
        self, asked: dict[str, Any]
    ) -> sdk.DescribeContainerGroupsResponseBodyContainerGroupsInitContainers:
        name = asked.get("Name", "")
        return complete(
            sdk.DescribeContainerGroupsResponseBodyContainerGroupsInitContainers(
                name=name,
                image=asked.get("Image", ""),
                image_pull_policy=asked.get("ImagePullPolicy") or "IfNotPresent",
                current_state=self._current_state(name, "InitContainers"),
                previous_state=self._previous_state(name, "InitContainers"),
                restart_count=self._restarts(name),
            )
        )

    def describe(self) -> sdk.DescribeContainerGroupsResponseBodyContainerGroups:
        record, kept = self.record, self.kept
        at = api_time(record.created_at)
        return complete(
            sdk.DescribeContainerGroupsResponseBodyContainerGroups(
                container_group_id=record.id,
                container_group_name=record.name,
                region_id=self.region,
                zone_id=kept.zone_id,
                resource_group_id=kept.resource_group_id,
                status=record.status.value,
                creation_time=at,
                ephemeral_storage=record.ephemeral_storage_gib - INCLUDED_STORAGE_GIB,
                cpu=kept.cpu or 2.0,
                memory=kept.memory or 4.0,
                restart_policy=kept.restart_policy,
                v_switch_id=kept.vswitch_id,
                security_group_id=kept.security_group_id,
                internet_ip=kept.internet_ip,
                intranet_ip=kept.intranet_ip,
                containers=[self._container(c) for c in kept.containers],
                init_containers=[self._init_container(c) for c in kept.init_containers],
                events=[
                    sdk.DescribeContainerGroupsResponseBodyContainerGroupsEvents(
                        count=1,
                        first_timestamp=at,
                        last_timestamp=at,
                        message=message,
                        name=f"{record.name}.{i}",
                        reason=reason,
                        type=kind,
                    )
                    for i, (kind, reason, message) in enumerate(self.events())
                ],
                tags=[
                    sdk.DescribeContainerGroupsResponseBodyContainerGroupsTags(key=k, value=v)
                    for k, v in sorted(kept.tags.items())
                ],
            )
        )

    def describe_events(
        self, source: str | None
    ) -> sdk.DescribeContainerGroupEventsResponseBodyData:
        """DescribeContainerGroupEvents' item: the group's events as Kubernetes words them
        (they are all ECI's own; another EventSource has none)."""
        record = self.record
        at = api_time(record.created_at)
        D = sdk.DescribeContainerGroupEventsResponseBodyDataEvents
        events = [
            complete(
                D(
                    count=1,
                    first_timestamp=at,
                    last_timestamp=at,
                    message=message,
                    reason=reason,
                    type=kind,
                    reporting_component=SOURCE,
                    metadata=sdk.DescribeContainerGroupEventsResponseBodyDataEventsMetadata(
                        name=f"{record.name}.{i}", namespace="default"
                    ),
                    source=sdk.DescribeContainerGroupEventsResponseBodyDataEventsSource(
                        component=SOURCE
                    ),
                    involved_object=sdk.DescribeContainerGroupEventsResponseBodyDataEventsInvolvedObject(
                        api_version="v1",
                        kind="Pod",
                        name=record.name,
                        namespace="default",
                        uid=record.id,
                    ),
                )
            )
            for i, (kind, reason, message) in enumerate(self.events())
            if source in (None, "", SOURCE)
        ]
        return complete(
            sdk.DescribeContainerGroupEventsResponseBodyData(
                container_group_id=record.id,
                name=record.name,
                namespace="default",
                uuid=record.id,
                events=events,
            )
        )


# the region ---------------------------------------------------------------------------------


class Region:
    """The ECI service of one region, as the emulator keeps it: a local backend and the
    emulator's store. Thread-safe: the backend and the store are."""

    def __init__(self, backend: LocalBackend, state: EmulatorState, stale_reads: int = 0) -> None:
        self.backend = backend
        self.state = state
        self.id = backend.region
        # Eventual consistency, as the cloud has it: after an update, this many describes of
        # the cache still show it as it was.
        self.stale_reads = stale_reads
        self._stale: dict[str, list[sdk.DescribeImageCachesResponseBodyImageCaches]] = {}

    # image caches

    def _record(self, cache_id: str | None) -> CacheRecord:
        try:
            return self.backend.get_image_cache(cache_id or "")
        except NotFound:
            raise errors.ImageCacheNotFound(f"image cache {cache_id} does not exist") from None

    def _kept_cache(self, cache_id: str) -> KeptCache:
        return KeptCache.model_validate(self.state.extra("cache", cache_id))

    def _cache(self, record: CacheRecord) -> ImageCache:
        kept = self._kept_cache(record.id)
        return ImageCache(record, kept, self.backend.store.events(record.id), self.id)

    def _cache_alive(self, cache_id: str) -> bool:
        try:
            return self.backend.get_image_cache(cache_id).status != CacheStatus.FAILED
        except NotFound:
            return False

    def _wanted(self, cache: CacheRecord, f: CacheFilter) -> bool:
        """Whether DescribeImageCaches' filters keep ``cache``."""
        if f.ids is not None and cache.id not in f.ids:
            return False
        if f.name and cache.name != f.name:
            return False
        if f.snapshot_id and cache.snapshot_id != f.snapshot_id:
            return False
        if (
            f.resource_group_id
            and self._kept_cache(cache.id).resource_group_id != f.resource_group_id
        ):
            return False
        if f.image and f.image not in cache.images:
            return False
        if f.match_images:
            exact, same = score(cache.images, f.match_images)
            return exact == len(f.match_images) if f.full_match else exact + same > 0
        return True

    def create_image_cache(
        self, spec: ImageCacheSpec, client_token: str | None
    ) -> sdk.CreateImageCacheResponseBody:
        def create() -> str:
            record = self.backend.create_image_cache(spec, wait=False)
            self.state.put_extra("cache", record.id, KeptCache.of(record.id, spec).model_dump())
            return record.id

        cache_id = self.state.once("CreateImageCache", client_token, create, self._cache_alive)
        build = self._kept_cache(cache_id).build_instance
        return sdk.CreateImageCacheResponseBody(image_cache_id=cache_id, container_group_id=build)

    def update_image_cache(self, change: CacheUpdate) -> sdk.UpdateImageCacheResponseBody:
        current = self._record(change.cache_id)
        if current.kind == CacheKind.AUTO:
            raise errors.IncorrectStatus("automatic image caches are managed by the service")
        if current.status not in UPDATABLE:
            raise errors.IncorrectStatus(
                f"image cache {current.id} is {current.status.value}; "
                "only Ready or UpdateFailed caches can be updated"
            )
        cache = self._cache(current)
        spec = cache.updated(change)
        before = cache.describe()
        self.backend.update_image_cache(current.id, spec, wait=False)
        # The cache keeps the instance that first built it.
        kept = KeptCache.of(current.id, spec).model_copy(
            update={"build_instance": cache.kept.build_instance}
        )
        self.state.put_extra("cache", current.id, kept.model_dump())
        if self.stale_reads:
            self._stale[current.id] = [before] * self.stale_reads
        return sdk.UpdateImageCacheResponseBody()

    def delete_image_cache(self, cache_id: str | None) -> sdk.DeleteImageCacheResponseBody:
        cache = self._record(cache_id)
        self.backend.delete_image_cache(cache.id)
        self.state.drop_extra("cache", cache.id)
        return sdk.DeleteImageCacheResponseBody()

    def describe_image_caches(
        self, which: CacheFilter, page: Page
    ) -> sdk.DescribeImageCachesResponseBody:
        caches = [c for c in self.backend.list_image_caches() if self._wanted(c, which)]
        shown, token, total = page.of(caches)
        items = []
        for c in shown:
            stale = self._stale.get(c.id)
            items.append(stale.pop() if stale else self._cache(c).describe())
        return sdk.DescribeImageCachesResponseBody(
            image_caches=items, next_token=token, total_count=total
        )

    def list_usage(self) -> sdk.ListUsageResponseBody:
        usage = self.backend.usage()
        groups = self.backend.list_container_groups()
        # The documented attributes (ListUsageResponseBody.attributes).
        return sdk.ListUsageResponseBody(
            attributes={
                "UsedCpu": len(groups),
                "MaxCpu": 1000,
                "MaxImageCacheCount": usage.quota.max_manual,
                "UsedImageCacheCount": usage.manual,
                "MaxAutoImageCacheCount": usage.quota.max_auto,
                "UsedAutoImageCacheCount": usage.auto,
                "MaxDataCacheCount": 0,
                "UsedDataCacheCount": 0,
            }
        )

    # container groups

    def _group(self, record: ContainerGroupRecord) -> ContainerGroup:
        kept = KeptGroup.model_validate(self.state.extra("group", record.id))
        return ContainerGroup(record, kept, self.id)

    def _groups(self, which: GroupFilter) -> list[ContainerGroupRecord]:
        return [
            g
            for g in self.backend.list_container_groups()
            if (which.ids is None or g.id in which.ids)
            and (not which.name or g.name == which.name)
            and (not which.status or g.status.value == which.status)
        ]

    def _group_alive(self, group_id: str) -> bool:
        try:
            self.backend.get_container_group(group_id)
        except NotFound:
            return False
        return True

    def _address(self, pool: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
        """The next address of a pool, past the network's first (its gateway) and last."""
        hosts = network.num_addresses - 3
        return str(network[2 + self.state.next_number(f"address:{pool}") % hosts])

    def create_container_group(
        self, new: NewGroup, client_token: str | None
    ) -> sdk.CreateContainerGroupResponseBody:
        cache_id = None
        if new.snapshot_id:
            # The reference: ImageSnapshotId is "the ID of the image cache".
            try:
                cache_id = self.backend.get_image_cache(new.snapshot_id).id
            except NotFound:
                raise errors.InvalidParameter(
                    "ImageSnapshotId", "no image cache has this id"
                ) from None
        spec = new.spec(cache_id)

        def create() -> str:
            record = self.backend.create_container_group(spec)
            has_eip = bool(spec.eip_instance_id or spec.auto_create_eip)
            kept = KeptGroup(
                containers=new.asked_containers,
                init_containers=new.asked_init_containers,
                tags=spec.tags,
                zone_id=spec.zone_id or f"{self.id}-a",
                resource_group_id=spec.resource_group_id or "",
                eip=spec.eip_instance_id or ("auto" if spec.auto_create_eip else ""),
                restart_policy=spec.restart_policy,
                cpu=spec.cpu,
                memory=spec.memory_gib,
                vswitch_id=spec.vswitch_id or "",
                security_group_id=spec.security_group_id or "",
                intranet_ip=self._address("private", PRIVATE_ADDRESSES),
                internet_ip=self._address("public", PUBLIC_ADDRESSES) if has_eip else "",
            )
            self.state.put_extra("group", record.id, kept.model_dump())
            return record.id

        group_id = self.state.once("CreateContainerGroup", client_token, create, self._group_alive)
        return sdk.CreateContainerGroupResponseBody(container_group_id=group_id)

    def describe_container_groups(
        self, which: GroupFilter, page: Page
    ) -> sdk.DescribeContainerGroupsResponseBody:
        shown, token, total = page.of(self._groups(which))
        return sdk.DescribeContainerGroupsResponseBody(
            container_groups=[self._group(g).describe() for g in shown],
            next_token=token,
            total_count=total,
        )

    def describe_container_group_events(
        self, which: GroupFilter, source: str | None
    ) -> sdk.DescribeContainerGroupEventsResponseBody:
        data = [self._group(g).describe_events(source) for g in self._groups(which)]
        return sdk.DescribeContainerGroupEventsResponseBody(data=data, total_count=len(data))

    def delete_container_group(self, group_id: str | None) -> sdk.DeleteContainerGroupResponseBody:
        try:
            group = self.backend.get_container_group(group_id or "")
        except NotFound:
            raise errors.ContainerGroupNotFound(
                f"container group {group_id} does not exist"
            ) from None
        self.backend.delete_container_group(group.id)
        self.state.drop_extra("group", group.id)
        return sdk.DeleteContainerGroupResponseBody()
