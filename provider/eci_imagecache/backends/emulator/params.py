"""Requests read through the official SDK's request models, strictly.

A request's flattened parameters (``Image.1=a&Container.1.Port.1.Port=80``) are unflattened and
read into the SDK model of the action, field by field: the wire names come from the model's own
``to_map``, the types from its annotations, and "required" from its docstrings (the vendor's
reference). A parameter the model does not have, a value of the wrong type, or a missing required
parameter is an :class:`InvalidParameter` / :class:`MissingParameter` naming the parameter, never
its value. Documented limits on counts live in :data:`LIMITS`.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import typing
from dataclasses import dataclass
from typing import Any

from alibabacloud_eci20180808 import models as sdk
from Tea.model import TeaModel

from ...engine.models import CacheSelection, ContainerGroupSpec, ImageCacheSpec
from ...engine.refs import ImageRef, parse_image_ref
from .errors import InvalidParameter, MissingParameter

# The actions served, with their request models.
REQUESTS: dict[str, type[TeaModel]] = {
    "CreateImageCache": sdk.CreateImageCacheRequest,
    "UpdateImageCache": sdk.UpdateImageCacheRequest,
    "DescribeImageCaches": sdk.DescribeImageCachesRequest,
    "DeleteImageCache": sdk.DeleteImageCacheRequest,
    "ListUsage": sdk.ListUsageRequest,
    "CreateContainerGroup": sdk.CreateContainerGroupRequest,
    "DescribeContainerGroups": sdk.DescribeContainerGroupsRequest,
    "DescribeContainerGroupEvents": sdk.DescribeContainerGroupEventsRequest,
    "DeleteContainerGroup": sdk.DeleteContainerGroupRequest,
}

# Documented limits on how many items a list parameter takes (action, parameter) -> maximum.
# Sources: the SDK docstrings ("Valid values of N: 1 to 20", "up to 100 container images",
# "up to 20 IDs") and the image cache overview ("a maximum of 20 container images").
LIMITS: dict[tuple[str, str], int] = {
    ("CreateImageCache", "Image"): 20,
    ("UpdateImageCache", "Image"): 20,
    ("CreateImageCache", "Tag"): 20,
    ("UpdateImageCache", "Tag"): 20,
    ("DescribeImageCaches", "MatchImage"): 100,
    ("CreateContainerGroup", "Tag"): 20,
}
MAX_PARAMETERS = 2000
MAX_NAME = 256
MAX_VALUE = 64 * 1024
_INT = re.compile(r"^[+-]?\d{1,18}$")
Model = typing.TypeVar("Model", bound=TeaModel)


@dataclass(frozen=True)
class Field:
    attr: str
    wire: str
    kind: str  # str / int / float / bool / list / model / dict
    item: Any  # list item: "str" or a model class; model: the class
    required: bool


def _kind(hint: Any) -> tuple[str, Any]:
    origin = typing.get_origin(hint)
    if origin in (list, typing.List):  # noqa: UP006 - the SDK annotates with typing.List
        (item,) = typing.get_args(hint)
        if isinstance(item, type) and issubclass(item, TeaModel):
            return "list", item
        return "list", "str"
    if origin in (dict, typing.Dict):  # noqa: UP006
        return "dict", None
    if isinstance(hint, type) and issubclass(hint, TeaModel):
        return "model", hint
    return {int: "int", float: "float", bool: "bool"}.get(hint, "str"), None


_NEUTRAL = {"str": "x", "int": 0, "float": 0.0, "bool": False, "list": [], "dict": {}}


def documentation(cls: type[TeaModel]) -> dict[str, str]:
    """The vendor's description of each attribute: the comment block above it in ``__init__``."""
    docs, block = {}, []
    for line in inspect.getsource(cls.__init__).splitlines():
        text = line.strip()
        if text.startswith("#"):
            block.append(text.lstrip("#").strip())
        elif m := re.match(r"self\.(\w+) = \1$", text):
            docs[m[1]] = "\n".join(block).strip()
            block = []
        elif text:
            block = []
    return docs


_FIELDS: dict[type[TeaModel], dict[str, Field]] = {}


def fields(cls: type[TeaModel]) -> dict[str, Field]:
    """A model's fields by wire name, as its own ``to_map`` names them (read once per model)."""
    known = _FIELDS.get(cls)
    if known is None:
        known = _FIELDS[cls] = _read_fields(cls)
    return known


def _read_fields(cls: type[TeaModel]) -> dict[str, Field]:
    hints = typing.get_type_hints(cls.__init__)
    docs = documentation(cls)
    baseline = cls().to_map()  # lists of models are written even when unset
    out = {}
    for attr, hint in hints.items():
        if attr == "return":
            continue
        kind, item = _kind(hint)
        value = (
            item()
            if kind == "model"
            else [item()]
            if kind == "list" and item != "str"
            else _NEUTRAL[kind]
        )
        probe = cls(**{attr: value}).to_map()
        (wire,) = [k for k in probe if k not in baseline or probe[k] != baseline[k]]
        out[wire] = Field(
            attr, wire, kind, item, "This parameter is required." in docs.get(attr, "")
        )
    return out


def unflatten(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """``Image.1=a&Container.1.Port.1.Port=80`` -> ``{"Image": ["a"], "Container": [...]}``."""
    if len(pairs) > MAX_PARAMETERS:
        raise InvalidParameter("(request)", f"more than {MAX_PARAMETERS} parameters")
    root: dict[Any, Any] = {}
    for key, value in pairs:
        if len(key) > MAX_NAME or len(value) > MAX_VALUE:
            raise InvalidParameter(key[:MAX_NAME].split(".")[0] or "(name)", "is too long")
        parts = key.split(".")
        node = root
        for depth, part in enumerate(parts):
            name = int(part) if part.isdigit() else part
            if not part or (isinstance(name, int) and not 1 <= name <= 10_000):
                raise InvalidParameter(".".join(parts[: depth + 1]), "is not a parameter name")
            if depth == len(parts) - 1:
                if isinstance(node.get(name), dict):
                    raise InvalidParameter(".".join(parts), "is given twice")
                node[name] = value
            else:
                node = node.setdefault(name, {})
                if not isinstance(node, dict):
                    raise InvalidParameter(".".join(parts[: depth + 1]), "is given twice")

    def lists(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        if node and all(isinstance(k, int) for k in node):
            return [lists(node[k]) for k in sorted(node)]
        if any(isinstance(k, int) for k in node):
            raise InvalidParameter("(request)", "mixes numbered and named sub-parameters")
        return {k: lists(v) for k, v in node.items()}

    unflattened: dict[str, Any] = lists(root)
    return unflattened


def _scalar(kind: str, value: Any, name: str) -> Any:
    if not isinstance(value, str):
        raise InvalidParameter(name, "must be a single value")
    if kind == "str":
        return value
    if kind == "bool":
        if value.lower() not in ("true", "false"):
            raise InvalidParameter(name, "must be true or false")
        return value.lower() == "true"
    if kind == "int":
        if not _INT.match(value.strip()):
            raise InvalidParameter(name, "must be an integer")
        return int(value)
    try:
        number = float(value)
    except ValueError:
        raise InvalidParameter(name, "must be a number") from None
    if not math.isfinite(number):
        raise InvalidParameter(name, "must be a finite number")
    return number


def read(cls: type[TeaModel], data: Any, name: str = "") -> TeaModel:
    """``data`` (unflattened) as an instance of ``cls``, or an API error naming the parameter."""
    if not isinstance(data, dict):
        raise InvalidParameter(name.rstrip(".") or "(request)", "must have named sub-parameters")
    known = fields(cls)
    for wire in data:
        if wire not in known:
            raise InvalidParameter(f"{name}{wire}", "is not a parameter of this action")
    values: dict[str, Any] = {}
    for wire, f in known.items():
        path = f"{name}{wire}"
        if wire not in data:
            if f.required:
                raise MissingParameter(path)
            continue
        value = data[wire]
        if f.kind == "list" and f.item == "str" and isinstance(value, str):
            # The gateway reads a list only as ``Name.N``; a bare ``Name`` is not one of its
            # parameters and is passed over. The Go SDK sends one for every empty list inside
            # a struct (``Container.1.LivenessProbe.Exec.Command=<[]string Value>``).
            if f.required:
                raise MissingParameter(f"{path}.1")
            continue
        if f.kind == "list":
            if not isinstance(value, list):
                raise InvalidParameter(path, "must be a numbered list (Name.1, Name.2, ...)")
            values[f.attr] = [
                read(f.item, v, f"{path}.{i}.") if f.item != "str" else _scalar("str", v, path)
                for i, v in enumerate(value, 1)
            ]
        elif f.kind == "model":
            values[f.attr] = read(f.item, value, f"{path}.")
        elif f.kind == "dict":
            if not isinstance(value, dict):
                raise InvalidParameter(path, "must have named sub-parameters")
            values[f.attr] = value
        else:
            values[f.attr] = _scalar(f.kind, value, path)
    return cls(**values)


def parse(action: str, pairs: list[tuple[str, str]]) -> TeaModel:
    request = read(REQUESTS[action], unflatten(pairs))
    for (limited, wire), most in LIMITS.items():
        if limited == action:
            value = getattr(request, fields(REQUESTS[action])[wire].attr)
            if value is not None and len(value) > most:
                raise InvalidParameter(wire, f"at most {most} items")
    return request


def complete(model: Model) -> Model:
    """Every documented field of a response model present: unset ones get the empty value of
    their type (nested models completed too), so an answer never lacks a documented key."""
    for f in fields(type(model)).values():
        value = getattr(model, f.attr)
        if value is None:
            value = complete(f.item()) if f.kind == "model" else type(_NEUTRAL[f.kind])()
            setattr(model, f.attr, value)
        elif f.kind == "model":
            complete(value)
        elif f.kind == "list" and f.item != "str":
            for item in value:
                complete(item)
    return model


# Requests read into what the emulator's models take -----------------------------------------
#
# Reading only: nothing here looks at state. The engine's specs validate when they are built
# (a ValidationError names the property); a value that needs the state to be checked (a cache
# that must exist, a setting an update leaves as it is) is handed on as it came.

# Page sizes: DescribeContainerGroups documents at most 20; for image caches the reference
# gives no maximum, so the emulator takes up to 100.
GROUP_PAGE = (20, 20)  # (default, maximum)
CACHE_PAGE = (10, 100)


def hosts(value: str | None) -> list[str]:
    """``"a:5000, b"`` (InsecureRegistry, PlainHttpRegistry) -> ``["a:5000", "b"]``."""
    return [h.strip() for h in (value or "").split(",") if h.strip()]


def credentials(items: list[Any] | None) -> list[dict[str, str]]:
    return [
        {"server": c.server or "", "username": c.user_name or "", "password": c.password or ""}
        for c in items or []
    ]


def acr_registries(items: list[Any] | None) -> list[dict[str, Any]]:
    return [
        {
            "instance_id": r.instance_id or "",
            "instance_name": r.instance_name,
            "region_id": r.region_id,
            "domains": list(r.domain or []),
        }
        for r in items or []
    ]


def tags(items: list[Any] | None) -> dict[str, str]:
    return {t.key: t.value or "" for t in items or [] if t.key}


def containers(items: list[Any] | None) -> list[dict[str, Any]]:
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


def image_cache_spec(r: sdk.CreateImageCacheRequest) -> ImageCacheSpec:
    """CreateImageCache's parameters as the cache they declare (the API's defaults filled)."""
    return ImageCacheSpec(
        name=r.image_cache_name,
        images=r.image,
        size_gib=r.image_cache_size if r.image_cache_size is not None else 20,
        retention_days=r.retention_days,
        eviction=r.elimination_strategy or "",
        instant=bool(r.flash),
        instant_copies=r.flash_copy_count or 1,
        standard_copies=r.standard_copy_count,
        layer_reuse=bool(r.auto_match_image_cache),
        credentials=credentials(r.image_registry_credential),
        insecure_registries=hosts(r.insecure_registry),
        plain_http_registries=hosts(r.plain_http_registry),
        vswitch_id=r.v_switch_id,
        security_group_id=r.security_group_id,
        eip_instance_id=r.eip_instance_id,
        tags=tags(r.tag),
        resource_group_id=r.resource_group_id,
        zone_id=r.zone_id,
        acr_registries=acr_registries(r.acr_registry_info),
    )


@dataclass(frozen=True)
class CacheUpdate:
    """UpdateImageCache's parameters. ``None`` (and an empty ``acr_registries``) leaves the
    setting as it is; ``tags`` are added to the cache's; the rest replace what was given."""

    cache_id: str
    name: str | None
    images: list[str] | None
    size_gib: int | None
    retention_days: int | None
    eviction: str | None  # the documented empty value means "never evicted"
    instant: bool | None
    standard_copies: int | None
    layer_reuse: bool | None
    resource_group_id: str | None
    acr_registries: list[dict[str, Any]]
    tags: dict[str, str]
    instant_copies: int
    credentials: list[dict[str, str]]
    vswitch_id: str | None
    security_group_id: str | None
    eip_instance_id: str | None


def cache_update(r: sdk.UpdateImageCacheRequest) -> CacheUpdate:
    return CacheUpdate(
        cache_id=r.image_cache_id or "",
        name=r.image_cache_name,
        images=r.image,
        size_gib=r.image_cache_size,
        retention_days=r.retention_days,
        eviction=r.elimination_strategy,
        instant=r.flash,
        standard_copies=r.standard_copy_count,
        layer_reuse=r.auto_match_image_cache,
        resource_group_id=r.resource_group_id,
        acr_registries=acr_registries(r.acr_registry_info),
        tags=tags(r.tag),
        instant_copies=r.flash_copy_count or 1,
        credentials=credentials(r.image_registry_credential),
        vswitch_id=r.v_switch_id,
        security_group_id=r.security_group_id,
        eip_instance_id=r.eip_instance_id,
    )


@dataclass(frozen=True)
class NewGroup:
    """CreateContainerGroup's parameters. The cache it names (ImageSnapshotId) must exist, which
    only the state can tell, so the spec is made once the cache is known (:meth:`spec`)."""

    snapshot_id: str | None
    auto_match: bool
    fields: dict[str, Any]  # ContainerGroupSpec's, but for the cache
    # The containers as the request gave them (the SDK's wire map), described back as asked.
    asked_containers: list[dict[str, Any]]
    asked_init_containers: list[dict[str, Any]]

    def spec(self, cache_id: str | None) -> ContainerGroupSpec:
        selection = (
            CacheSelection.EXPLICIT
            if cache_id
            else CacheSelection.AUTO_CREATE
            if self.auto_match
            else CacheSelection.NONE
        )
        return ContainerGroupSpec(**self.fields, cache=selection, cache_id=cache_id)


def new_group(r: sdk.CreateContainerGroupRequest) -> NewGroup:
    fields = {
        "name": r.container_group_name,
        "containers": containers(r.container),
        "init_containers": containers(r.init_container),
        "extra_ephemeral_storage_gib": r.ephemeral_storage or 0,
        "restart_policy": r.restart_policy or "Always",
        "credentials": credentials(r.image_registry_credential),
        "insecure_registries": hosts(r.insecure_registry),
        "plain_http_registries": hosts(r.plain_http_registry),
        "vswitch_id": r.v_switch_id,
        "security_group_id": r.security_group_id,
        "tags": tags(r.tag),
        "eip_instance_id": r.eip_instance_id,
        "auto_create_eip": bool(r.auto_create_eip),
        "eip_bandwidth_mbps": r.eip_bandwidth,
        "resource_group_id": r.resource_group_id,
        "zone_id": r.zone_id,
        "acr_registries": acr_registries(r.acr_registry_info),
        **({"cpu": r.cpu} if r.cpu else {}),
        **({"memory_gib": r.memory} if r.memory else {}),
    }
    return NewGroup(
        snapshot_id=r.image_snapshot_id,
        auto_match=bool(r.auto_match_image_cache),
        fields=fields,
        asked_containers=[c.to_map() for c in r.container or []],
        asked_init_containers=[c.to_map() for c in r.init_container or []],
    )


@dataclass(frozen=True)
class Page:
    """Which items of a listing to answer: ``size`` of them from ``start``."""

    size: int
    start: int

    def of(self, items: list[Any]) -> tuple[list[Any], str, int]:
        """The page, the NextToken of the one after it ("" when this is the last), the total."""
        end = self.start + self.size
        return items[self.start : end], (str(end) if end < len(items) else ""), len(items)


def limit(value: int | None, most: int) -> None:
    if value is not None and not 1 <= value <= most:
        raise InvalidParameter("Limit", f"must be between 1 and {most}")


def page(value: int | None, token: str | None, sizes: tuple[int, int]) -> Page:
    """Limit and NextToken, checked before they are used."""
    default, most = sizes
    limit(value, most)
    if token and not (token.isdigit() and len(token) < 10):
        raise InvalidParameter("NextToken", "is not one this API gave")
    return Page(value or default, int(token or 0))


def id_set(value: str | None, name: str, most: int) -> set[str] | None:
    """A JSON array of ids (ContainerGroupIds), or None when the parameter is absent."""
    if not value:
        return None
    try:
        ids = json.loads(value)
    except ValueError:
        ids = None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InvalidParameter(name, "must be a JSON array of ids")
    if len(ids) > most:
        raise InvalidParameter(name, f"at most {most} ids")
    return set(ids)


@dataclass(frozen=True)
class CacheFilter:
    """DescribeImageCaches' filters; ``None`` (or empty) filters nothing."""

    ids: set[str] | None
    name: str | None
    snapshot_id: str | None
    resource_group_id: str | None
    image: ImageRef | None
    match_images: list[ImageRef]
    full_match: bool


def cache_filter(r: sdk.DescribeImageCachesRequest) -> CacheFilter:
    return CacheFilter(
        ids={i.strip() for i in r.image_cache_id.split(",")} if r.image_cache_id else None,
        name=r.image_cache_name,
        snapshot_id=r.snapshot_id,
        resource_group_id=r.resource_group_id,
        image=parse_image_ref(r.image) if r.image else None,
        match_images=[parse_image_ref(i) for i in r.match_image or []],
        full_match=bool(r.image_full_match),
    )


@dataclass(frozen=True)
class GroupFilter:
    """DescribeContainerGroups' (and DescribeContainerGroupEvents') filters."""

    ids: set[str] | None
    name: str | None = None
    status: str | None = None
