"""Requests read through the official SDK's request models, strictly.

A request's flattened parameters (``Image.1=a&Container.1.Port.1.Port=80``) are unflattened and
read into the SDK model of the action, field by field: the wire names come from the model's own
``to_map``, the types from its annotations, and "required" from its docstrings (the vendor's
reference). A parameter the model does not have, a value of the wrong type, or a missing required
parameter is an :class:`InvalidParameter` / :class:`MissingParameter` naming the parameter, never
its value. Documented limits on counts live in :data:`LIMITS`.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
import typing
from dataclasses import dataclass
from typing import Any

from alibabacloud_eci20180808 import models as sdk
from Tea.model import TeaModel

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


@functools.cache
def fields(cls: type[TeaModel]) -> dict[str, Field]:
    """A model's fields by wire name, as its own ``to_map`` names them."""
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

    return lists(root)


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
    values = {}
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


def complete(model: TeaModel) -> TeaModel:
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
