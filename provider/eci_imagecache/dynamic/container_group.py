"""The ``ContainerGroup`` resource: an ECI instance whose images come from a cache when one fits.

The cache is resolved once, when the group is created, and recorded (cache id, match degree, the
reason). ``check`` asks the backend which cache would be chosen now and records it in the
``match_preview`` input, so the preview shows it. Any change to the group replaces it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
)

from ..backends.base import BackendError, NotFound
from ..engine.cost import PriceError, estimate_group
from ..engine.diff import diff_group
from ..engine.models import CacheSelection, ContainerGroupRecord, ContainerGroupSpec
from .common import present, resource_inputs, secret_credentials, unknown_keys, validate
from .pricing import price_inputs, prices_of
from .settings import PLACEMENT_FIELDS, check_placement, open_backend, placement_inputs

SPEC_FIELDS = tuple(ContainerGroupSpec.model_fields)


def spec_from(props: dict[str, Any]) -> ContainerGroupSpec:
    values = present(props, SPEC_FIELDS)
    for key in ("containers", "init_containers"):
        if key in values:  # drop unset optional container fields
            values[key] = [{k: v for k, v in c.items() if v is not None} for c in values[key]]
    return ContainerGroupSpec(**values)


def preview_text(backend: Any, spec: ContainerGroupSpec) -> str:
    if spec.cache == CacheSelection.NONE:
        return "no cache (cache selection is none)"
    if spec.cache == CacheSelection.EXPLICIT:
        return f"explicit: {spec.cache_id}"
    best = backend.match(spec).chosen
    if best is not None:
        return f"would use {best.name} ({best.cache_id}): {best.degree.label}; {best.reason}"
    if spec.cache == CacheSelection.AUTO_CREATE:
        return "no matching cache now; one would be created automatically"
    return "no matching cache now; images would be pulled"


def outputs_of(record: ContainerGroupRecord, props: dict[str, Any]) -> dict[str, Any]:
    return {
        **{
            k: props.get(k)
            for k in (*PLACEMENT_FIELDS, *SPEC_FIELDS, "match_preview", "prices", "cost")
        },
        "group_id": record.id,
        "status": record.status.value,
        "images": [str(i) for i in record.images],
        "ephemeral_storage_gib": record.ephemeral_storage_gib,
        "cache_used": record.cache_id,
        "cache_name": record.cache_name,
        "match_degree": record.match_degree,
        "match_reason": record.match_reason,
        "auto_created_cache_id": record.auto_created_cache_id,
        "bytes_fetched": record.bytes_fetched,
        "bytes_from_cache": record.bytes_from_cache,
        "preparation_seconds": record.preparation_seconds,
        # What runs (the local backend runs containers; the cloud reports its own).
        "status_reason": record.status_reason,
        "containers_state": [
            {
                "name": c.name,
                "state": c.state,
                "exit_code": c.exit_code,
                "restart_count": c.restart_count,
                "reason": c.reason,
            }
            for c in record.containers
        ],
        "address": record.address,
        "phases": {
            "image_preparation_seconds": record.preparation_seconds,
            "container_start_seconds": record.container_start_seconds,
        },
    }


class ContainerGroupProvider(ResourceProvider):
    serialize_as_secret_always = False

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = [CheckFailure(p, r) for p, r in check_placement(news)]
        unknown = unknown_keys(news)
        if unknown:
            if unknown == ["cache_id"]:
                news = {**news, "match_preview": "explicit: the cache created in this update"}
            return CheckResult(news, failures)
        spec, spec_failures = validate(lambda: spec_from(news))
        failures += spec_failures
        if spec is None or failures:
            return CheckResult(news, failures)
        inputs = dict(news)
        try:
            cost = estimate_group(spec.extra_ephemeral_storage_gib, prices_of(news))
            inputs["cost"] = cost.as_output()
        except PriceError as err:
            return CheckResult(news, [CheckFailure("prices", str(err).removeprefix("prices: "))])
        if olds and "containers" in olds:
            inputs["match_preview"] = olds.get("match_preview")  # matched once, at creation
        else:
            try:
                inputs["match_preview"] = preview_text(open_backend(news), spec)
            except BackendError as err:
                inputs["match_preview"] = f"unknown until deploy ({err})"
        return CheckResult(inputs, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = diff_group(olds, news, (*SPEC_FIELDS, *PLACEMENT_FIELDS))
        return DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        record = open_backend(props).create_container_group(spec_from(props))
        return CreateResult(id_=record.id, outs=outputs_of(record, props))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        try:
            record = open_backend(props).get_container_group(id_)
        except NotFound:
            return ReadResult(id_=None, outs={})
        return ReadResult(id_=id_, outs=outputs_of(record, props))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        with contextlib.suppress(NotFound):
            open_backend(props).delete_container_group(id_)


@dataclass
class ContainerArgs:
    name: str
    image: pulumi.Input[str]
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    ports: list[int] = field(default_factory=list)
    cpu: float | None = None
    memory_gib: float | None = None
    image_pull_policy: str = "IfNotPresent"
    working_dir: str | None = None

    def to_input(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ContainerGroupArgs:
    """Arguments of a :class:`ContainerGroup`.

    ``cache``: ``"auto-create"`` (match, create a cache on a miss; the default), ``"auto"`` (match
    only), ``"explicit"`` (use ``cache_id``) or ``"none"``. Pass an :class:`ImageCache`'s ``id``
    as ``cache_id``: it stays known while the cache is updated in place, so the group is not
    shown as replaced.
    """

    containers: list[ContainerArgs]
    init_containers: list[ContainerArgs] = field(default_factory=list)
    name: str | None = None
    cpu: float | None = None
    memory_gib: float | None = None
    extra_ephemeral_storage_gib: int | None = None
    restart_policy: str | None = None
    cache: str | None = None
    cache_id: pulumi.Input[str] | None = None
    credentials: list[Any] = field(default_factory=list)  # RegistryCredentialArgs
    insecure_registries: list[str] = field(default_factory=list)
    plain_http_registries: list[str] = field(default_factory=list)
    vswitch_id: pulumi.Input[str] | None = None
    security_group_id: pulumi.Input[str] | None = None
    tags: dict[str, str] = field(default_factory=dict)
    # Alibaba Cloud only: public network access (an existing EIP, or one made with the group),
    # placement, ACR Enterprise instances pulled from without a password. Each change replaces.
    eip_instance_id: pulumi.Input[str] | None = None
    auto_create_eip: bool | None = None
    eip_bandwidth_mbps: int | None = None
    resource_group_id: pulumi.Input[str] | None = None
    zone_id: pulumi.Input[str] | None = None
    acr_registries: list[dict[str, Any]] = field(default_factory=list)
    backend: str | None = None
    region: str | None = None


class ContainerGroup(Resource, module="eci", name="ContainerGroup"):
    """An ECI container group that prepares its images from a matching image cache."""

    group_id: pulumi.Output[str]
    status: pulumi.Output[str]
    images: pulumi.Output[list[str]]
    ephemeral_storage_gib: pulumi.Output[int]
    cache_used: pulumi.Output[str | None]
    cache_name: pulumi.Output[str | None]
    match_degree: pulumi.Output[str]
    match_reason: pulumi.Output[str]
    match_preview: pulumi.Output[str]
    auto_created_cache_id: pulumi.Output[str | None]
    bytes_fetched: pulumi.Output[int]
    bytes_from_cache: pulumi.Output[int]
    preparation_seconds: pulumi.Output[float]
    cost: pulumi.Output[dict[str, Any] | None]  # an estimate: extra ephemeral storage
    status_reason: pulumi.Output[str]
    containers_state: pulumi.Output[list[dict[str, Any]]]
    address: pulumi.Output[str | None]
    phases: pulumi.Output[dict[str, float | None]]

    def __init__(
        self,
        resource_name: str,
        args: ContainerGroupArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        cache = args.cache or ("explicit" if args.cache_id is not None else None)
        props: dict[str, Any] = {
            **placement_inputs(args.backend, args.region),
            "name": args.name or resource_name,
            "containers": [c.to_input() for c in args.containers],
            "init_containers": [c.to_input() for c in args.init_containers],
            "cpu": args.cpu,
            "memory_gib": args.memory_gib,
            "extra_ephemeral_storage_gib": args.extra_ephemeral_storage_gib,
            "restart_policy": args.restart_policy,
            "cache": cache,
            "cache_id": args.cache_id,
            "credentials": secret_credentials(args.credentials),
            "insecure_registries": args.insecure_registries,
            "plain_http_registries": args.plain_http_registries,
            "vswitch_id": args.vswitch_id,
            "security_group_id": args.security_group_id,
            "tags": args.tags,
            "eip_instance_id": args.eip_instance_id,
            "auto_create_eip": args.auto_create_eip,
            "eip_bandwidth_mbps": args.eip_bandwidth_mbps,
            "resource_group_id": args.resource_group_id,
            "zone_id": args.zone_id,
            "acr_registries": args.acr_registries,
            "prices": price_inputs(),
        }
        props, opts = resource_inputs(type(self), props, opts)
        super().__init__(ContainerGroupProvider(), resource_name, props, opts)
