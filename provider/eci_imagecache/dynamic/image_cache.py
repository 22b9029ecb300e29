"""The ``ImageCache`` resource: a manual image cache managed by Pulumi.

``check`` validates with the engine and, when the content would change, asks the backend for the
build plan, which it records in the ``build_plan`` input so that ``pulumi preview --diff`` shows
what will be fetched and reused; ``change`` says whether the change updates in place, rebuilds or
replaces. ``diff`` decides with the engine's diff rules.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    UpdateResult,
)

from ..backends.base import BackendError, NotFound
from ..engine.cost import PriceError, Prices, estimate_cache
from ..engine.diff import PLAN_FIELDS, diff_cache
from ..engine.lifecycle import expires_at
from ..engine.models import CacheRecord, ImageCacheSpec
from ..engine.planner import PlanError
from ..registry.client import RegistryUnavailable
from .common import present, resource_inputs, secret_credentials, unknown_keys, validate
from .pricing import price_inputs, prices_of
from .settings import PLACEMENT_FIELDS, check_placement, open_backend, placement_inputs

# Inputs that make the spec: exactly the engine model's fields.
SPEC_FIELDS = tuple(ImageCacheSpec.model_fields)


def spec_from(props: dict[str, Any]) -> ImageCacheSpec:
    return ImageCacheSpec(**present(props, SPEC_FIELDS))


def comparable(props: dict[str, Any]) -> dict[str, Any]:
    """Inputs or outputs with defaults applied, so that unset and default compare equal."""
    spec = spec_from(props)
    values = spec.model_dump(mode="json", exclude={"credentials", "images"})
    return {
        **values,
        "images": [str(i) for i in spec.images],
        "credentials": [c.model_dump() for c in spec.credentials],
        **{k: props.get(k) for k in ("backend", "region")},
    }


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def outputs_of(record: CacheRecord, props: dict[str, Any]) -> dict[str, Any]:
    """The full output map: every input, normalized, plus what the backend reports."""
    return {
        **{k: props.get(k) for k in (*PLACEMENT_FIELDS, *SPEC_FIELDS)},
        "adopt_id": props.get("adopt_id"),
        "change": props.get("change"),
        "name": record.name,
        "images": [str(i) for i in record.images],
        "size_gib": record.size_gib,
        "retention_days": record.retention_days,
        "eviction": record.eviction.value,
        # What the cloud reports back, so a refresh sees a change made elsewhere.
        "tags": props.get("tags") if record.tags is None else record.tags,
        "resource_group_id": record.resource_group_id or props.get("resource_group_id"),
        # Build options: not every backend reports them back, so the declared values stand.
        "instant": props.get("instant"),
        "layer_reuse": props.get("layer_reuse"),
        "cache_id": record.id,
        "kind": record.kind.value,
        "status": record.status.value,
        "snapshot": record.snapshot.value,
        "progress": record.progress,
        "failure": record.failure,
        "created_at": _iso(record.created_at),
        "expires_at": _iso(expires_at(record)),
        "last_used_at": _iso(record.last_used_at),
        "snapshot_id": record.snapshot_id,
        "layer_count": record.layer_count,
        "content_bytes": record.content_bytes,
        "fetched_bytes": record.fetched_bytes,
        "reused_bytes": record.reused_bytes,
        "build_plan": record.plan or props.get("build_plan"),
        "prices": props.get("prices"),
        "cost": props.get("cost"),
    }


def repriced(cost: Any, spec: ImageCacheSpec, prices: Prices) -> Any:
    """The previous estimate at today's prices (the content, hence the plan, is unchanged)."""
    if not isinstance(cost, dict) or not {"fetch_bytes", "content_bytes"} <= cost.keys():
        return cost
    fetched, content = int(cost["fetch_bytes"]), int(cost["content_bytes"])
    return estimate_cache(fetched, content, spec.size_gib, prices).as_output()


class ImageCacheProvider(ResourceProvider):
    """Stateless: every hook opens the backend its inputs name."""

    serialize_as_secret_always = False

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = [CheckFailure(p, r) for p, r in check_placement(news)]
        if unknown_keys(news):
            return CheckResult(news, failures)  # validated again once the values are known
        spec, spec_failures = validate(lambda: spec_from(news))
        failures += spec_failures
        try:
            prices = prices_of(news)
        except PriceError as err:
            failures.append(CheckFailure("prices", str(err).removeprefix("prices: ")))
        if spec is None or failures:
            return CheckResult(news, failures)
        inputs = {**news, "images": [str(i) for i in spec.images]}
        if olds and "images" in olds:
            change = diff_cache(comparable(olds), comparable(inputs))
            content_changed = any(c.field in PLAN_FIELDS for c in change.changes)
            inputs["change"] = change.summary() if change.changes else olds.get("change")
        else:
            content_changed = True
            inputs["change"] = "create"
        if not content_changed:
            inputs["build_plan"] = olds.get("build_plan")
            inputs["cost"] = repriced(olds.get("cost"), spec, prices)
            return CheckResult(inputs, [])
        try:
            plan = open_backend(news).plan_image_cache(spec)
            inputs["build_plan"] = plan.summary()
            cost = estimate_cache(plan.fetch_bytes, plan.content_bytes, spec.size_gib, prices)
            inputs["cost"] = cost.as_output()
        except PlanError as err:
            failures.append(CheckFailure("size_gib", str(err).removeprefix("size_gib: ")))
        except RegistryUnavailable as err:
            inputs["build_plan"] = f"unknown until deploy ({err})"
        except (BackendError, ValueError) as err:
            failures.append(CheckFailure("images", str(err)))
        return CheckResult(inputs, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        unknown = unknown_keys(news)
        if unknown:
            # Not known until deploy time: they may change; placement may force a replacement.
            return DiffResult(
                changes=True, replaces=[k for k in ("backend", "region") if k in unknown]
            )
        result = diff_cache(comparable(olds), comparable(news))
        return DiffResult(
            changes=bool(result.changes),
            replaces=result.replaced_fields,
            delete_before_replace=False,
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        backend = open_backend(props)
        spec = spec_from(props)
        if props.get("adopt_id"):
            record = backend.update_image_cache(props["adopt_id"], spec)
        else:
            record = backend.create_image_cache(spec)
        return CreateResult(id_=record.id, outs=outputs_of(record, props))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        try:
            record = open_backend(props).get_image_cache(id_)
        except NotFound:
            return ReadResult(id_=None, outs={})  # gone (evicted or expired): refresh drops it
        outs = outputs_of(record, props)
        return ReadResult(id_=id_, outs=outs)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        record = open_backend(news).update_image_cache(id_, spec_from(news))
        return UpdateResult(outs=outputs_of(record, news))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        with contextlib.suppress(NotFound):  # already gone (evicted, expired): done
            open_backend(props).delete_image_cache(id_)


@dataclass
class RegistryCredentialArgs:
    server: pulumi.Input[str]
    username: pulumi.Input[str]
    password: pulumi.Input[str]


@dataclass
class ImageCacheArgs:
    """Arguments of an :class:`ImageCache`. ``None`` means the documented default."""

    images: pulumi.Input[list[str]]
    name: pulumi.Input[str] | None = None
    size_gib: pulumi.Input[int] | None = None  # default 20
    retention_days: pulumi.Input[int] | None = None  # default: kept until deleted
    eviction: pulumi.Input[str] | None = None  # "" (never) or "LRU"
    instant: pulumi.Input[bool] | None = None
    instant_copies: pulumi.Input[int] | None = None
    layer_reuse: pulumi.Input[bool] | None = None
    credentials: list[RegistryCredentialArgs] = field(default_factory=list)
    insecure_registries: list[str] = field(default_factory=list)
    plain_http_registries: list[str] = field(default_factory=list)
    vswitch_id: pulumi.Input[str] | None = None
    security_group_id: pulumi.Input[str] | None = None
    eip_instance_id: pulumi.Input[str] | None = None
    tags: dict[str, str] = field(default_factory=dict)
    # Alibaba Cloud only: resource group, zone (a change replaces), regular snapshot copies,
    # ACR Enterprise instances pulled from without a password ({"instance_id", "domains", ...}).
    resource_group_id: pulumi.Input[str] | None = None
    zone_id: pulumi.Input[str] | None = None
    standard_copies: pulumi.Input[int] | None = None
    acr_registries: list[dict[str, Any]] = field(default_factory=list)
    adopt_id: str | None = None  # bring an existing cache under management
    backend: str | None = None  # default: stack config eci:backend, else "local"
    region: str | None = None  # default: stack config eci:region


class ImageCache(Resource, module="eci", name="ImageCache"):
    """A manual ECI image cache. Changing images or size rebuilds it in place."""

    cache_id: pulumi.Output[str]
    name: pulumi.Output[str]
    images: pulumi.Output[list[str]]
    size_gib: pulumi.Output[int]
    retention_days: pulumi.Output[int | None]
    eviction: pulumi.Output[str]
    kind: pulumi.Output[str]
    status: pulumi.Output[str]
    snapshot: pulumi.Output[str]
    progress: pulumi.Output[int]
    failure: pulumi.Output[str | None]
    created_at: pulumi.Output[str]
    expires_at: pulumi.Output[str | None]
    last_used_at: pulumi.Output[str | None]
    snapshot_id: pulumi.Output[str | None]
    layer_count: pulumi.Output[int]
    content_bytes: pulumi.Output[int]
    fetched_bytes: pulumi.Output[int]
    reused_bytes: pulumi.Output[int]
    build_plan: pulumi.Output[str]
    change: pulumi.Output[str]
    cost: pulumi.Output[dict[str, Any] | None]  # an estimate: build once, snapshot per month

    def __init__(
        self, resource_name: str, args: ImageCacheArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        props: dict[str, Any] = {
            **placement_inputs(args.backend, args.region),
            "name": args.name or resource_name,
            "images": args.images,
            "size_gib": args.size_gib,
            "retention_days": args.retention_days,
            "eviction": args.eviction,
            "instant": args.instant,
            "instant_copies": args.instant_copies,
            "layer_reuse": args.layer_reuse,
            "credentials": secret_credentials(args.credentials),
            "insecure_registries": args.insecure_registries,
            "plain_http_registries": args.plain_http_registries,
            "vswitch_id": args.vswitch_id,
            "security_group_id": args.security_group_id,
            "eip_instance_id": args.eip_instance_id,
            "tags": args.tags,
            "resource_group_id": args.resource_group_id,
            "zone_id": args.zone_id,
            "standard_copies": args.standard_copies,
            "acr_registries": args.acr_registries,
            "adopt_id": args.adopt_id,
            "prices": price_inputs(),
        }
        props, opts = resource_inputs(type(self), props, opts)
        super().__init__(ImageCacheProvider(), resource_name, props, opts)
