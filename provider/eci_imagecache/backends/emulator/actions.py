"""The ECI actions, served from a local backend: SDK request model in, SDK response model out.

Each action reads its request as the SDK's request model (see ``params``), applies the API's
rules, and answers with the SDK's response model, so a field name that the SDK does not have
cannot be written. Wire errors are raised as the classes in ``errors``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from datetime import UTC, datetime
from typing import Any

from alibabacloud_eci20180808 import models as sdk
from pydantic import ValidationError

from ...engine.lifecycle import expires_at
from ...engine.matcher import score
from ...engine.models import (
    CacheKind,
    CacheRecord,
    CacheSelection,
    CacheStatus,
    ContainerGroupRecord,
    ContainerGroupSpec,
    ImageCacheSpec,
    SnapshotKind,
    validation_failures,
)
from ...engine.refs import ImageRefError, parse_image_ref
from ..base import BackendError, Conflict, InvalidSpec, NotFound, QuotaExceeded
from ..local.backend import LocalBackend
from . import errors
from .params import complete
from .state import EmulatorState

# Our property names -> the API's parameter names, for errors users can act on.
PARAMETER_NAMES = {
    "name": "ImageCacheName",
    "images": "Image",
    "size_gib": "ImageCacheSize",
    "retention_days": "RetentionDays",
    "eviction": "EliminationStrategy",
    "instant_copies": "FlashCopyCount",
    "standard_copies": "StandardCopyCount",
    "credentials": "ImageRegistryCredential",
    "containers": "Container",
    "init_containers": "InitContainer",
    "cache_id": "ImageSnapshotId",
    "extra_ephemeral_storage_gib": "EphemeralStorage",
    "eip_bandwidth_mbps": "EipBandwidth",
    "auto_create_eip": "AutoCreateEip",
    "tags": "Tag",
    "cpu": "Cpu",
    "memory_gib": "Memory",
    "restart_policy": "RestartPolicy",
}
# Page sizes: DescribeContainerGroups documents at most 20; for image caches the reference
# gives no maximum, so the emulator takes up to 100.
GROUP_PAGE = (20, 20)  # (default, maximum)
CACHE_PAGE = (10, 100)
UPDATABLE = (CacheStatus.READY, CacheStatus.UPDATE_FAILED)
# The image-cache events ECI reports on a container group ("Custom events of ECI").
SOURCE = "EciService"
# Where the emulator's groups get their addresses. The reference: IntranetIp is "the private IP
# address" (the instance's ENI in its vSwitch, given when the instance is made) and InternetIp
# "the public IP address" (its EIP, when it has one). A private range for the vSwitch, and the
# documentation range (RFC 5737, TEST-NET-3) for EIPs, which it cycles through.
PRIVATE_ADDRESSES = ipaddress.ip_network("172.16.0.0/12")
PUBLIC_ADDRESSES = ipaddress.ip_network("203.0.113.0/24")


def api_time(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else ""


def _hosts(value: str | None) -> list[str]:
    return [h.strip() for h in (value or "").split(",") if h.strip()]


def _credentials(items: list[Any] | None) -> list[dict[str, str]]:
    return [
        {"server": c.server or "", "username": c.user_name or "", "password": c.password or ""}
        for c in items or []
    ]


def _acr(items: list[Any] | None) -> list[dict[str, Any]]:
    return [
        {
            "instance_id": r.instance_id or "",
            "instance_name": r.instance_name,
            "region_id": r.region_id,
            "domains": list(r.domain or []),
        }
        for r in items or []
    ]


def _tags(items: list[Any] | None) -> dict[str, str]:
    return {t.key: t.value or "" for t in items or [] if t.key}


def _page(items: list[Any], limit: int | None, token: str | None, sizes: tuple[int, int]):
    """One page and the next token. Limit and NextToken are checked before they are used."""
    default, most = sizes
    if limit is not None and not 1 <= limit <= most:
        raise errors.InvalidParameter("Limit", f"must be between 1 and {most}")
    if token and not (token.isdigit() and len(token) < 10):
        raise errors.InvalidParameter("NextToken", "is not one this API gave")
    size, start = limit or default, int(token or 0)
    more = start + size < len(items)
    return items[start : start + size], (str(start + size) if more else ""), len(items)


def _ids(value: str | None, name: str, most: int) -> set[str] | None:
    if not value:
        return None
    try:
        ids = json.loads(value)
    except ValueError:
        ids = None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise errors.InvalidParameter(name, "must be a JSON array of ids")
    if len(ids) > most:
        raise errors.InvalidParameter(name, f"at most {most} ids")
    return set(ids)


def _invalid(err: ValidationError) -> errors.EciError:
    prop, message = validation_failures(err)[0]
    name = PARAMETER_NAMES.get(prop.split(".")[0], prop)
    # A message that may quote the value (a password can sit in any field) is not repeated.
    quotes = any(q in message for q in "'\"`")
    return errors.InvalidParameter(name, "is not valid" if quotes else message)


class Actions:
    """The actions, on one local backend. Thread-safe: the backend and the state are."""

    def __init__(self, backend: LocalBackend, state: EmulatorState, stale_reads: int = 0) -> None:
        self.backend = backend
        self.state = state
        self.region = backend.region
        # Eventual consistency, as the cloud has it: after an update, this many describes of
        # the cache still show it as it was.
        self.stale_reads = stale_reads
        self._stale: dict[str, list[Any]] = {}

    def call(self, action: str, request: Any) -> Any:
        if request.region_id != self.region:
            raise errors.InvalidParameter("RegionId", f"this endpoint serves {self.region} only")
        try:
            return getattr(self, action)(request)
        except ValidationError as err:
            raise _invalid(err) from None
        except ImageRefError:
            raise errors.InvalidParameter("Image", "is not an image reference") from None
        except errors.EciError:
            raise
        except NotFound as err:
            raise errors.NotFoundError(str(err), "InvalidResource.NotFound") from None
        except QuotaExceeded as err:
            raise errors.ImageCacheQuotaExceeded(str(err)) from None
        except Conflict as err:
            raise errors.IncorrectStatus(str(err)) from None
        except InvalidSpec as err:
            raise errors.EciError(str(err), "InvalidParameter") from None
        except BackendError as err:
            raise errors.OperationFailed(str(err)) from None

    # image caches -------------------------------------------------------------------------

    def _cache(self, cache_id: str | None) -> CacheRecord:
        try:
            return self.backend.get_image_cache(cache_id or "")
        except NotFound:
            raise errors.ImageCacheNotFound(f"image cache {cache_id} does not exist") from None

    def CreateImageCache(self, r: sdk.CreateImageCacheRequest) -> sdk.CreateImageCacheResponseBody:
        spec = ImageCacheSpec(
            name=r.image_cache_name,
            images=r.image,
            size_gib=r.image_cache_size if r.image_cache_size is not None else 20,
            retention_days=r.retention_days,
            eviction=r.elimination_strategy or "",
            instant=bool(r.flash),
            instant_copies=r.flash_copy_count or 1,
            standard_copies=r.standard_copy_count,
            layer_reuse=bool(r.auto_match_image_cache),
            credentials=_credentials(r.image_registry_credential),
            insecure_registries=_hosts(r.insecure_registry),
            plain_http_registries=_hosts(r.plain_http_registry),
            vswitch_id=r.v_switch_id,
            security_group_id=r.security_group_id,
            eip_instance_id=r.eip_instance_id,
            tags=_tags(r.tag),
            resource_group_id=r.resource_group_id,
            zone_id=r.zone_id,
            acr_registries=_acr(r.acr_registry_info),
        )

        def create() -> str:
            record = self.backend.create_image_cache(spec, wait=False)
            self.state.put_extra("cache", record.id, self._cache_extra(record.id, spec))
            return record.id

        cache_id = self.state.once("CreateImageCache", r.client_token, create, self._alive)
        build = self.state.extra("cache", cache_id).get("build_instance", "")
        return sdk.CreateImageCacheResponseBody(image_cache_id=cache_id, container_group_id=build)

    def _alive(self, cache_id: str) -> bool:
        try:
            return self.backend.get_image_cache(cache_id).status != CacheStatus.FAILED
        except NotFound:
            return False

    @staticmethod
    def _cache_extra(cache_id: str, spec: ImageCacheSpec) -> dict[str, Any]:
        digest = hashlib.sha256(cache_id.encode()).hexdigest()[:20]
        return {
            # The intermediate instance that builds a manual cache (CreateImageCache's answer).
            "build_instance": f"eci-{digest}",
            "tags": spec.tags,
            "resource_group_id": spec.resource_group_id or "",
            "zone_id": spec.zone_id,
            "standard_copies": spec.standard_copies,
            "acr": [a.model_dump() for a in spec.acr_registries],
            "insecure": spec.insecure_registries,
            "plain_http": spec.plain_http_registries,
        }

    def UpdateImageCache(self, r: sdk.UpdateImageCacheRequest) -> sdk.UpdateImageCacheResponseBody:
        current = self._cache(r.image_cache_id)
        if current.kind == CacheKind.AUTO:
            raise errors.IncorrectStatus("automatic image caches are managed by the service")
        if current.status not in UPDATABLE:
            raise errors.IncorrectStatus(
                f"image cache {current.id} is {current.status.value}; "
                "only Ready or UpdateFailed caches can be updated"
            )
        extra = self.state.extra("cache", current.id)

        def given(value: Any, kept: Any) -> Any:
            return kept if value is None else value

        tags = {**extra.get("tags", {}), **_tags(r.tag)}  # Tag adds tags (the reference)
        spec = ImageCacheSpec(
            name=given(r.image_cache_name, current.name),
            images=given(r.image, [str(i) for i in current.images]),
            size_gib=given(r.image_cache_size, current.size_gib),
            retention_days=given(r.retention_days, current.retention_days),
            # Absent keeps the strategy; the documented empty value means "never evicted".
            eviction=given(r.elimination_strategy, current.eviction.value),
            instant=given(r.flash, current.instant),
            instant_copies=r.flash_copy_count or 1,
            standard_copies=given(r.standard_copy_count, extra.get("standard_copies")),
            layer_reuse=given(r.auto_match_image_cache, current.layer_reuse),
            credentials=_credentials(r.image_registry_credential),
            insecure_registries=extra.get("insecure", []),
            plain_http_registries=extra.get("plain_http", []),
            vswitch_id=r.v_switch_id,
            security_group_id=r.security_group_id,
            eip_instance_id=r.eip_instance_id,
            tags=tags,
            resource_group_id=given(r.resource_group_id, extra.get("resource_group_id") or None),
            acr_registries=_acr(r.acr_registry_info) or extra.get("acr", []),
        )
        before = self._cache_item(current)
        self.backend.update_image_cache(current.id, spec, wait=False)
        self.state.put_extra(
            "cache",
            current.id,
            {
                **extra,
                **self._cache_extra(current.id, spec),
                "build_instance": extra.get("build_instance", ""),
            },
        )
        if self.stale_reads:
            self._stale[current.id] = [before] * self.stale_reads
        return sdk.UpdateImageCacheResponseBody()

    def DeleteImageCache(self, r: sdk.DeleteImageCacheRequest) -> sdk.DeleteImageCacheResponseBody:
        cache = self._cache(r.image_cache_id)
        self.backend.delete_image_cache(cache.id)
        self.state.drop_extra("cache", cache.id)
        return sdk.DeleteImageCacheResponseBody()

    def _cache_item(self, record: CacheRecord) -> sdk.DescribeImageCachesResponseBodyImageCaches:
        extra = self.state.extra("cache", record.id)
        if record.kind == CacheKind.AUTO:
            # Named auto-create-for-<instance>: the instance is the cache's ContainerGroupId.
            instance = record.name.removeprefix("auto-create-for-")
        else:
            instance = extra.get("build_instance", "")
        E = sdk.DescribeImageCachesResponseBodyImageCachesEvents
        return complete(
            sdk.DescribeImageCachesResponseBodyImageCaches(
                container_group_id=instance,
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
                    for i, e in enumerate(self.backend.store.events(record.id))
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
                resource_group_id=extra.get("resource_group_id", ""),
                snapshot_id=record.snapshot_id or ""
                if record.snapshot == SnapshotKind.STANDARD
                else "",
                status=record.status.value,
                tags=[
                    sdk.DescribeImageCachesResponseBodyImageCachesTags(key=k, value=v)
                    for k, v in sorted(extra.get("tags", {}).items())
                ],
            )
        )

    def DescribeImageCaches(
        self, r: sdk.DescribeImageCachesRequest
    ) -> sdk.DescribeImageCachesResponseBody:
        caches = self.backend.list_image_caches()
        if r.image_cache_id:
            wanted_ids = {i.strip() for i in r.image_cache_id.split(",")}
            caches = [c for c in caches if c.id in wanted_ids]
        if r.image_cache_name:
            caches = [c for c in caches if c.name == r.image_cache_name]
        if r.snapshot_id:
            caches = [c for c in caches if c.snapshot_id == r.snapshot_id]
        if r.resource_group_id:
            caches = [
                c
                for c in caches
                if self.state.extra("cache", c.id).get("resource_group_id") == r.resource_group_id
            ]
        if r.image:
            image = parse_image_ref(r.image)
            caches = [c for c in caches if image in c.images]
        wanted = [parse_image_ref(i) for i in r.match_image or []]
        if wanted:
            scored = [(c, score(c.images, wanted)) for c in caches]
            caches = [
                c
                for c, (exact, same) in scored
                if (exact == len(wanted) if r.image_full_match else exact + same > 0)
            ]
        page, token, total = _page(caches, r.limit, r.next_token, CACHE_PAGE)
        items = []
        for c in page:
            stale = self._stale.get(c.id)
            items.append(stale.pop() if stale else self._cache_item(c))
        return sdk.DescribeImageCachesResponseBody(
            image_caches=items, next_token=token, total_count=total
        )

    def ListUsage(self, r: sdk.ListUsageRequest) -> sdk.ListUsageResponseBody:
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

    # container groups ---------------------------------------------------------------------

    @staticmethod
    def _containers(items: list[Any] | None) -> list[dict[str, Any]]:
        return [
            {
                "name": c.name or "",
                "image": c.image or "",
                "image_pull_policy": c.image_pull_policy or "IfNotPresent",
                "command": list(c.command or []),
                "args": list(c.arg or []),
                "env": {e.key: e.value or "" for e in c.environment_var or [] if e.key},
                "ports": [p.port for p in c.port or [] if p.port is not None],
                **({"cpu": c.cpu} if c.cpu else {}),
                **({"memory_gib": c.memory} if c.memory else {}),
            }
            for c in items or []
        ]

    def CreateContainerGroup(
        self, r: sdk.CreateContainerGroupRequest
    ) -> sdk.CreateContainerGroupResponseBody:
        cache_id = None
        if r.image_snapshot_id:
            # The reference: ImageSnapshotId is "the ID of the image cache".
            try:
                cache_id = self.backend.get_image_cache(r.image_snapshot_id).id
            except NotFound:
                raise errors.InvalidParameter(
                    "ImageSnapshotId", "no image cache has this id"
                ) from None
        selection = (
            CacheSelection.EXPLICIT
            if cache_id
            else CacheSelection.AUTO_CREATE
            if r.auto_match_image_cache
            else CacheSelection.NONE
        )
        spec = ContainerGroupSpec(
            name=r.container_group_name,
            containers=self._containers(r.container),
            init_containers=self._containers(r.init_container),
            extra_ephemeral_storage_gib=r.ephemeral_storage or 0,
            cache=selection,
            cache_id=cache_id,
            restart_policy=r.restart_policy or "Always",
            credentials=_credentials(r.image_registry_credential),
            insecure_registries=_hosts(r.insecure_registry),
            plain_http_registries=_hosts(r.plain_http_registry),
            vswitch_id=r.v_switch_id,
            security_group_id=r.security_group_id,
            tags=_tags(r.tag),
            eip_instance_id=r.eip_instance_id,
            auto_create_eip=bool(r.auto_create_eip),
            eip_bandwidth_mbps=r.eip_bandwidth,
            resource_group_id=r.resource_group_id,
            zone_id=r.zone_id,
            acr_registries=_acr(r.acr_registry_info),
            **({"cpu": r.cpu} if r.cpu else {}),
            **({"memory_gib": r.memory} if r.memory else {}),
        )

        def create() -> str:
            record = self.backend.create_container_group(spec)
            has_eip = bool(spec.eip_instance_id or spec.auto_create_eip)
            self.state.put_extra(
                "group",
                record.id,
                {
                    "containers": [c.to_map() for c in r.container or []],
                    "init_containers": [c.to_map() for c in r.init_container or []],
                    "tags": spec.tags,
                    "zone_id": spec.zone_id or f"{self.region}-a",
                    "resource_group_id": spec.resource_group_id or "",
                    "eip": spec.eip_instance_id or ("auto" if spec.auto_create_eip else ""),
                    "restart_policy": spec.restart_policy,
                    "cpu": spec.cpu,
                    "memory": spec.memory_gib,
                    "vswitch_id": spec.vswitch_id or "",
                    "security_group_id": spec.security_group_id or "",
                    "intranet_ip": self._address("private", PRIVATE_ADDRESSES),
                    "internet_ip": self._address("public", PUBLIC_ADDRESSES) if has_eip else "",
                },
            )
            return record.id

        group_id = self.state.once(
            "CreateContainerGroup", r.client_token, create, self._group_alive
        )
        return sdk.CreateContainerGroupResponseBody(container_group_id=group_id)

    def _address(self, pool: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
        """The next address of a pool, past the network's first (its gateway) and last."""
        hosts = network.num_addresses - 3
        return str(network[2 + self.state.next_number(f"address:{pool}") % hosts])

    def _group_alive(self, group_id: str) -> bool:
        try:
            self.backend.get_container_group(group_id)
        except NotFound:
            return False
        return True

    @staticmethod
    def _group_events(record: ContainerGroupRecord) -> list[tuple[str, str, str]]:
        """(type, reason, message) of the group's events, as ECI words them: the image-cache
        ones, and a Warning when the group failed before any of its containers started."""
        return [*Actions._cache_events(record), *Actions._failure_events(record)]

    @staticmethod
    def _failure_events(record: ContainerGroupRecord) -> list[tuple[str, str, str]]:
        """A group whose containers could not be started at all (nothing to run, a layer that
        cannot be mounted): the containers say nothing, so ECI's pods tell it with a Warning
        event, "Failed" with "Error: ..." as the kubelet words it. A container that ran and
        failed is told by its own state (Terminated, ExitCode), not by an event."""
        if record.status.value != "Failed" or any(
            c.started_at is not None or c.state != "Waiting" for c in record.containers
        ):
            return []
        return [("Warning", "Failed", f"Error: {record.status_reason or 'containers not started'}")]

    @staticmethod
    def _cache_events(record: ContainerGroupRecord) -> list[tuple[str, str, str]]:
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

    def _group_item(
        self, record: ContainerGroupRecord
    ) -> sdk.DescribeContainerGroupsResponseBodyContainerGroups:
        extra = self.state.extra("group", record.id)
        at = api_time(record.created_at)
        m = sdk

        # What runs (the local backend's containers), in ECI's words.
        observed = {c.name: c for c in record.containers}

        def current(name: str, kind: str = "Containers") -> Any:
            c = observed.get(name)
            if c is None:
                return None
            model = getattr(
                m, f"DescribeContainerGroupsResponseBodyContainerGroups{kind}CurrentState"
            )
            return model(
                state=c.state,
                exit_code=c.exit_code,
                start_time=api_time(c.started_at),
                finish_time=api_time(c.finished_at),
                reason=c.reason,
            )

        def previous(name: str, kind: str = "Containers") -> Any:
            """A container waiting to be restarted: how its last run ended."""
            c = observed.get(name)
            if c is None or c.state != "Waiting" or c.exit_code is None:
                return None
            model = getattr(
                m, f"DescribeContainerGroupsResponseBodyContainerGroups{kind}PreviousState"
            )
            return model(
                state="Terminated",
                exit_code=c.exit_code,
                start_time=api_time(c.started_at),
                finish_time=api_time(c.finished_at),
            )

        def restarts(name: str) -> int:
            c = observed.get(name)
            return c.restart_count if c is not None else 0

        def containers(items: list[dict[str, Any]]) -> list[Any]:
            out = []
            for c in items:
                out.append(
                    complete(
                        m.DescribeContainerGroupsResponseBodyContainerGroupsContainers(
                            name=c.get("Name", ""),
                            image=c.get("Image", ""),
                            image_pull_policy=c.get("ImagePullPolicy") or "IfNotPresent",
                            commands=c.get("Command") or [],
                            args=c.get("Arg") or [],
                            cpu=c.get("Cpu") or 0.0,
                            memory=c.get("Memory") or 0.0,
                            ready=record.status.value == "Running",
                            current_state=current(c.get("Name", "")),
                            previous_state=previous(c.get("Name", "")),
                            restart_count=restarts(c.get("Name", "")),
                            ports=[
                                m.DescribeContainerGroupsResponseBodyContainerGroupsContainersPorts(
                                    port=p.get("Port"), protocol=p.get("Protocol") or "TCP"
                                )
                                for p in c.get("Port") or []
                            ],
                            environment_vars=[
                                m.DescribeContainerGroupsResponseBodyContainerGroupsContainersEnvironmentVars(
                                    key=e.get("Key"), value=e.get("Value", "")
                                )
                                for e in c.get("EnvironmentVar") or []
                            ],
                        )
                    )
                )
            return out

        def init_containers(items: list[dict[str, Any]]) -> list[Any]:
            return [
                complete(
                    m.DescribeContainerGroupsResponseBodyContainerGroupsInitContainers(
                        name=c.get("Name", ""),
                        image=c.get("Image", ""),
                        image_pull_policy=c.get("ImagePullPolicy") or "IfNotPresent",
                        current_state=current(c.get("Name", ""), "InitContainers"),
                        previous_state=previous(c.get("Name", ""), "InitContainers"),
                        restart_count=restarts(c.get("Name", "")),
                    )
                )
                for c in items
            ]

        return complete(
            m.DescribeContainerGroupsResponseBodyContainerGroups(
                container_group_id=record.id,
                container_group_name=record.name,
                region_id=self.region,
                zone_id=extra.get("zone_id", ""),
                resource_group_id=extra.get("resource_group_id", ""),
                status=record.status.value,
                creation_time=at,
                ephemeral_storage=record.ephemeral_storage_gib - 30,
                cpu=extra.get("cpu") or 2.0,
                memory=extra.get("memory") or 4.0,
                restart_policy=extra.get("restart_policy", "Always"),
                v_switch_id=extra.get("vswitch_id", ""),
                security_group_id=extra.get("security_group_id", ""),
                internet_ip=extra.get("internet_ip", ""),
                intranet_ip=extra.get("intranet_ip", ""),
                containers=containers(extra.get("containers", [])),
                init_containers=init_containers(extra.get("init_containers", [])),
                events=[
                    m.DescribeContainerGroupsResponseBodyContainerGroupsEvents(
                        count=1,
                        first_timestamp=at,
                        last_timestamp=at,
                        message=message,
                        name=f"{record.name}.{i}",
                        reason=reason,
                        type=kind,
                    )
                    for i, (kind, reason, message) in enumerate(self._group_events(record))
                ],
                tags=[
                    m.DescribeContainerGroupsResponseBodyContainerGroupsTags(key=k, value=v)
                    for k, v in sorted(extra.get("tags", {}).items())
                ],
            )
        )

    def DescribeContainerGroups(
        self, r: sdk.DescribeContainerGroupsRequest
    ) -> sdk.DescribeContainerGroupsResponseBody:
        groups = self.backend.list_container_groups()
        ids = _ids(r.container_group_ids, "ContainerGroupIds", 20)
        if ids is not None:
            groups = [g for g in groups if g.id in ids]
        if r.container_group_name:
            groups = [g for g in groups if g.name == r.container_group_name]
        if r.status:
            groups = [g for g in groups if g.status.value == r.status]
        page, token, total = _page(groups, r.limit, r.next_token, GROUP_PAGE)
        return sdk.DescribeContainerGroupsResponseBody(
            container_groups=[self._group_item(g) for g in page],
            next_token=token,
            total_count=total,
        )

    def DescribeContainerGroupEvents(
        self, r: sdk.DescribeContainerGroupEventsRequest
    ) -> sdk.DescribeContainerGroupEventsResponseBody:
        groups = self.backend.list_container_groups()
        ids = _ids(r.container_group_ids, "ContainerGroupIds", 20)
        if ids is not None:
            groups = [g for g in groups if g.id in ids]
        if r.limit is not None and not 1 <= r.limit <= GROUP_PAGE[1]:
            raise errors.InvalidParameter("Limit", f"must be between 1 and {GROUP_PAGE[1]}")
        data = []
        for g in groups:
            at = api_time(g.created_at)
            events = [
                complete(
                    sdk.DescribeContainerGroupEventsResponseBodyDataEvents(
                        count=1,
                        first_timestamp=at,
                        last_timestamp=at,
                        message=message,
                        reason=reason,
                        type=kind,
                        reporting_component=SOURCE,
                        metadata=sdk.DescribeContainerGroupEventsResponseBodyDataEventsMetadata(
                            name=f"{g.name}.{i}", namespace="default"
                        ),
                        source=sdk.DescribeContainerGroupEventsResponseBodyDataEventsSource(
                            component=SOURCE
                        ),
                        involved_object=sdk.DescribeContainerGroupEventsResponseBodyDataEventsInvolvedObject(
                            api_version="v1", kind="Pod", name=g.name, namespace="default", uid=g.id
                        ),
                    )
                )
                for i, (kind, reason, message) in enumerate(self._group_events(g))
                if r.event_source in (None, "", SOURCE)
            ]
            data.append(
                complete(
                    sdk.DescribeContainerGroupEventsResponseBodyData(
                        container_group_id=g.id,
                        name=g.name,
                        namespace="default",
                        uuid=g.id,
                        events=events,
                    )
                )
            )
        return sdk.DescribeContainerGroupEventsResponseBody(data=data, total_count=len(data))

    def DeleteContainerGroup(
        self, r: sdk.DeleteContainerGroupRequest
    ) -> sdk.DeleteContainerGroupResponseBody:
        try:
            self.backend.get_container_group(r.container_group_id or "")
        except NotFound:
            raise errors.ContainerGroupNotFound(
                f"container group {r.container_group_id} does not exist"
            ) from None
        self.backend.delete_container_group(r.container_group_id)
        self.state.drop_extra("group", r.container_group_id)
        return sdk.DeleteContainerGroupResponseBody()
