"""The ``ImageCache`` resource: a manual image cache managed by Pulumi."""

from __future__ import annotations

from dataclasses import dataclass
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
from pydantic import ValidationError

from ..engine.diff import diff_cache
from ..engine.models import CacheRecord, ImageCacheSpec, validation_failures
from ..engine.refs import ImageRefError
from .settings import open_backend, placement_inputs

SPEC_FIELDS = (
    "name",
    "images",
    "size_gib",
    "retention_days",
    "eviction",
    "layer_reuse",
    "instant",
    "instant_copies",
)
PLACEMENT_FIELDS = ("backend", "region", "data_dir")


def _is_unknown(value: Any) -> bool:
    """Preview passes values not yet known as ``pulumi.output.Unknown`` (or contains them)."""
    if isinstance(value, pulumi.output.Unknown):
        return True
    if isinstance(value, list | tuple):
        return any(_is_unknown(v) for v in value)
    if isinstance(value, dict):
        return any(_is_unknown(v) for v in value.values())
    return False


def spec_from(props: dict[str, Any]) -> ImageCacheSpec:
    values = {k: props[k] for k in SPEC_FIELDS if props.get(k) is not None}
    return ImageCacheSpec(**values)


def comparable(props: dict[str, Any]) -> dict[str, Any]:
    """Inputs or outputs with defaults applied, so that unset and default compare equal."""
    spec = spec_from(props)
    values = spec.model_dump(mode="json", exclude={"credentials", "images"})
    images = [str(i) for i in spec.images]
    return {
        **values,
        "images": images,
        "backend": props.get("backend"),
        "region": props.get("region"),
    }


def outputs_of(record: CacheRecord, props: dict[str, Any]) -> dict[str, Any]:
    """The full output map: the inputs as the backend normalized them, plus what it reports."""
    return {
        **{k: props.get(k) for k in PLACEMENT_FIELDS},
        "name": record.name,
        "images": [str(i) for i in record.images],
        "size_gib": record.size_gib,
        "retention_days": record.retention_days,
        "eviction": record.eviction.value,
        "layer_reuse": record.layer_reuse,
        "instant": record.instant,
        "instant_copies": props.get("instant_copies") or 1,
        "cache_id": record.id,
        "status": record.status.value,
        "progress": record.progress,
        "created_at": record.created_at.isoformat(),
    }


class ImageCacheProvider(ResourceProvider):
    """Stateless: every hook opens the backend its inputs name."""

    serialize_as_secret_always = False

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        known = {k: v for k, v in news.items() if not _is_unknown(v)}
        if len(known) != len(news):
            return CheckResult(news, [])  # validated again once the values are known
        try:
            spec = spec_from(news)
        except ValidationError as err:
            return CheckResult(news, [CheckFailure(p, m) for p, m in validation_failures(err)])
        except ImageRefError as err:
            return CheckResult(news, [CheckFailure("images", str(err))])
        return CheckResult({**news, "images": [str(i) for i in spec.images]}, [])

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        unknown = sorted(k for k, v in news.items() if _is_unknown(v))
        replaces = [k for k in ("backend", "region") if k in unknown]
        if unknown:
            # Not known until deploy time: say which may change, replacing if placement may.
            return DiffResult(changes=True, replaces=replaces)
        result = diff_cache(comparable(olds), comparable(news))
        return DiffResult(
            changes=bool(result.changes),
            replaces=result.replaced_fields,
            delete_before_replace=False,
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        record = open_backend(props).create_image_cache(spec_from(props))
        return CreateResult(id_=record.id, outs=outputs_of(record, props))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        record = open_backend(props).get_image_cache(id_)
        return ReadResult(id_=id_, outs=outputs_of(record, props))

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        record = open_backend(news).update_image_cache(id_, spec_from(news))
        return UpdateResult(outs=outputs_of(record, news))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        open_backend(props).delete_image_cache(id_)


@dataclass
class ImageCacheArgs:
    images: pulumi.Input[list[str]]
    name: pulumi.Input[str] | None = None
    size_gib: pulumi.Input[int] | None = None
    retention_days: pulumi.Input[int] | None = None
    eviction: pulumi.Input[str] | None = None
    layer_reuse: pulumi.Input[bool] | None = None
    instant: pulumi.Input[bool] | None = None
    instant_copies: pulumi.Input[int] | None = None
    backend: str | None = None
    region: str | None = None


class ImageCache(Resource, module="eci", name="ImageCache"):
    cache_id: pulumi.Output[str]
    status: pulumi.Output[str]
    progress: pulumi.Output[int]
    images: pulumi.Output[list[str]]
    created_at: pulumi.Output[str]

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
            "layer_reuse": args.layer_reuse,
            "instant": args.instant,
            "instant_copies": args.instant_copies,
            # outputs: present at construction so they can be read from the resource
            "cache_id": None,
            "status": None,
            "progress": None,
            "created_at": None,
        }
        super().__init__(ImageCacheProvider(), resource_name, props, opts)
