"""Property values between the plugin protocol and the hooks.

The protocol carries ``PropertyValue``s with camelCase names, numbers as floats, secrets and
unknowns marked; the hooks take and give plain snake_case dicts (unknowns as
``pulumi.output.UNKNOWN``), as the dynamic providers' server hands them. Names are translated
along the schema (an object type's fields are, a map's keys such as ``tags`` or ``env`` are
not).

Untyped languages (YAML, or TypeScript without the SDK) can send any value for any property:
:func:`shape_failures` compares what arrived with the schema first, so a string where an object
belongs, a list holding null or a number given as a string is a check failure naming the
property, before a hook sees it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
from pulumi.provider.experimental.property_value import Computed, PropertyValue
from pulumi.runtime import rpc
from pydantic.alias_generators import to_camel, to_snake

from .schema import ObjectType, Prop, Shape, object_types

UNKNOWN = pulumi.output.UNKNOWN
# How the protocol carries an unknown value: a marker string (the SDK's ``PropertyValue``
# neither reads it as ``Computed`` nor can send a ``Computed``).
WIRE_UNKNOWN = rpc.UNKNOWN


def to_python(value: PropertyValue) -> Any:
    """A plain value: secrets unwrapped (the hooks never write them anywhere), unknowns as
    ``UNKNOWN``."""
    inner = value.value
    if isinstance(inner, Computed) or inner == WIRE_UNKNOWN:
        return UNKNOWN
    if isinstance(inner, Mapping):
        return {k: to_python(v) for k, v in inner.items()}
    if isinstance(inner, Sequence) and not isinstance(inner, str):
        return [to_python(v) for v in inner]
    return inner


def to_property(value: Any, secret: bool = False) -> PropertyValue:
    if value is UNKNOWN or isinstance(value, pulumi.output.Unknown):
        result = PropertyValue(WIRE_UNKNOWN)
    elif isinstance(value, bool) or value is None or isinstance(value, str | float):
        result = PropertyValue(value)
    elif isinstance(value, int):
        result = PropertyValue(float(value))
    elif isinstance(value, Mapping):
        result = PropertyValue({str(k): to_property(v) for k, v in value.items()})
    elif isinstance(value, Sequence):
        result = PropertyValue([to_property(v) for v in value])
    else:
        result = PropertyValue(str(value))
    return result.with_secret(True) if secret else result


def _object(shape: Shape) -> ObjectType | None:
    return object_types().get(shape.ref or "") if shape.kind == "object" else None


def _convert(value: Any, shape: Shape | None, to_hooks: bool) -> Any:
    """``value`` with the names of every object type inside it translated. Values of the wrong
    shape pass unchanged (validation reports them)."""
    if shape is None or value is UNKNOWN:
        return value
    if shape.kind == "array" and isinstance(value, list):
        return [_convert(v, shape.item, to_hooks) for v in value]
    if shape.kind == "map" and isinstance(value, dict):
        return {k: _convert(v, shape.item, to_hooks) for k, v in value.items()}
    fields = _object(shape)
    if fields is not None and isinstance(value, dict):
        return names(value, fields.props, to_hooks)
    return value


def names(props: Mapping[str, Any], known: Mapping[str, Prop], to_hooks: bool) -> dict[str, Any]:
    """Translate a property map: camelCase -> snake_case for the hooks (``to_hooks``), or
    back. ``known`` are the properties by camelCase name; others are translated by rule."""
    if to_hooks:
        return {
            (known[k].name if k in known else to_snake(k)): _convert(
                v, known[k].shape if k in known else None, True
            )
            for k, v in props.items()
        }
    by_snake = {p.name: p for p in known.values()}
    return {
        (by_snake[k].camel if k in by_snake else to_camel(k)): _convert(
            v, by_snake[k].shape if k in by_snake else None, False
        )
        for k, v in props.items()
    }


def camel_path(path: str) -> str:
    """A hook's property path (``containers[0].memory_gib``) as the user wrote it."""
    return re.sub(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+", lambda m: to_camel(m[0]), path)


def as_failure(path: str, reason: str) -> tuple[str, str]:
    """(property, reason) as ``check`` reports them: the top-level property (what Pulumi shows
    the value of), and the place within it leading the reason, as the hooks do."""
    prop = re.split(r"[.\[]", path, maxsplit=1)[0]
    return prop, reason if path == prop else f"{path}: {reason}"


_KINDS = {
    "string": (str,),
    "boolean": (bool,),
    "number": (int, float),
    "integer": (int, float),
}


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value:g}"
    if isinstance(value, str):
        return f"the string {value!r}"[:80]
    if isinstance(value, list):
        return "a list"
    return "an object"


_EXPECTED = {
    "string": "a string",
    "boolean": "true or false",
    "number": "a number",
    "integer": "a whole number",
    "array": "a list",
    "map": "an object (a map)",
    "object": "an object",
}


def shape_failures(value: Any, shape: Shape, path: str) -> list[tuple[str, str]]:
    """(property path, reason) for each place ``value`` does not have the schema's shape.
    Unknown values are not checked (they are checked again once known)."""
    if value is UNKNOWN or shape.kind == "any":
        return []
    if value is None:
        return [(path, f"expected {_EXPECTED[shape.kind]}, got null")]
    expected = _EXPECTED[shape.kind]
    if shape.kind in _KINDS:
        ok = isinstance(value, _KINDS[shape.kind]) and not (
            shape.kind != "boolean" and isinstance(value, bool)
        )
        if ok and shape.kind == "integer" and float(value) != int(value):
            return [(path, f"expected a whole number, got {value:g}")]
        return [] if ok else [(path, f"expected {expected}, got {_describe(value)}")]
    if shape.kind == "array":
        if not isinstance(value, list):
            return [(path, f"expected {expected}, got {_describe(value)}")]
        return [
            f
            for n, item in enumerate(value)
            for f in shape_failures(item, shape.item, f"{path}[{n}]")  # type: ignore[arg-type]
        ]
    if not isinstance(value, dict):
        return [(path, f"expected {expected}, got {_describe(value)}")]
    if shape.kind == "map":
        return [
            f
            for key, item in value.items()
            for f in shape_failures(item, shape.item, f"{path}.{key}")  # type: ignore[arg-type]
        ]
    fields = _object(shape)
    return object_failures(value, fields.props, path) if fields else []


def object_failures(
    value: Mapping[str, Any], known: Mapping[str, Prop], path: str = ""
) -> list[tuple[str, str]]:
    """Failures of an object's fields (null means unset): required ones missing, values of
    another shape, fields the schema does not have."""
    failures: list[tuple[str, str]] = [
        (f"{path}.{key}" if path else key, "required, but not given")
        for key, prop in known.items()
        if prop.required and value.get(key) is None
    ]
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        prop = known.get(key)
        if prop is None:
            failures.append((where, f"unknown property; expected one of {', '.join(known)}"))
        elif item is not None:
            failures += shape_failures(item, prop.shape, where)
    return failures
