"""The package schema, built from what the Python face already declares.

Property names are the Args classes' fields in camelCase; their types are the engine's models'
(where a model has the field) or the Args annotations; their descriptions are the items of the
Args docstrings; outputs are the dynamic resources' output annotations. Nothing here lists a
property by hand, so the two faces cannot drift: a field added to an Args class and its
docstring is in the schema, typed and described.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import re
import sys
import types
import typing
from collections.abc import Awaitable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pulumi.output
from pydantic import BaseModel, SecretStr
from pydantic.alias_generators import to_camel

from ..components.cached_groups import CachedContainerGroupsArgs
from ..dynamic.container_group import (
    ContainerArgs,
    ContainerGroup,
    ContainerGroupArgs,
)
from ..dynamic.image_cache import ImageCache, ImageCacheArgs, RegistryCredentialArgs
from ..engine.models import (
    AcrRegistry,
    ContainerGroupSpec,
    ContainerSpec,
    ImageCacheSpec,
    RegistryCredential,
)
from ..engine.refs import ImageRef

PACKAGE = "eci-imagecache"
VERSION = "0.1.0"


def token(name: str) -> str:
    return f"{PACKAGE}:index:{name}"


@dataclass(frozen=True)
class Shape:
    """A property's type: ``string``, ``integer``, ``number``, ``boolean``, ``any``,
    ``array`` / ``map`` (of ``item``) or ``object`` (the type named ``ref``)."""

    kind: str
    item: Shape | None = None
    ref: str | None = None

    def spec(self) -> dict[str, Any]:
        if self.kind == "array":
            return {"type": "array", "items": self.item.spec()}  # type: ignore[union-attr]
        if self.kind == "map":
            return {"type": "object", "additionalProperties": self.item.spec()}  # type: ignore[union-attr]
        if self.kind == "object":
            return {"$ref": f"#/types/{token(self.ref)}"}  # type: ignore[arg-type]
        if self.kind == "any":
            return {"$ref": "pulumi.json#/Any"}
        return {"type": self.kind}


@dataclass(frozen=True)
class Prop:
    name: str  # the hooks' snake_case name
    shape: Shape
    description: str = ""
    required: bool = False
    secret: bool = False

    @property
    def camel(self) -> str:
        return to_camel(self.name)

    def spec(self) -> dict[str, Any]:
        spec = self.shape.spec()
        if self.description:
            spec["description"] = self.description
        if self.secret:
            spec["secret"] = True
        return spec


@dataclass
class ObjectType:
    """A resource's inputs or outputs, or an object type: properties by camelCase name."""

    name: str
    description: str
    props: dict[str, Prop] = field(default_factory=dict)

    def by_snake(self) -> dict[str, Prop]:
        return {p.name: p for p in self.props.values()}

    def spec(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "type": "object",
            "properties": {name: p.spec() for name, p in self.props.items()},
            "required": sorted(n for n, p in self.props.items() if p.required),
        }


# The object types: their Args class (user-facing fields and docstring), if any, and the
# engine's model (types).
OBJECT_TYPES: dict[str, tuple[type | None, type[BaseModel]]] = {
    "Container": (ContainerArgs, ContainerSpec),
    "RegistryCredential": (RegistryCredentialArgs, RegistryCredential),
    "AcrRegistry": (None, AcrRegistry),
}
_TYPE_OF_MODEL = {model: name for name, (_, model) in OBJECT_TYPES.items()}
_TYPE_OF_ARGS = {args: name for name, (args, _) in OBJECT_TYPES.items() if args is not None}


def _hints(cls: type) -> dict[str, Any]:
    """Annotations, evaluated (``pulumi.Input`` names ``Output`` and ``Awaitable`` lazily)."""
    namespace = {**vars(pulumi.output), **vars(sys.modules[cls.__module__])}
    return typing.get_type_hints(cls, namespace)


def shape_of(annotation: Any) -> tuple[Shape, bool]:
    """The shape of a Python annotation, and whether it is secret."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        # Optional, and pulumi.Input[T] = T | Awaitable[T] | Output[T]: the plain member.
        members = [
            a
            for a in typing.get_args(annotation)
            if a is not type(None)
            and typing.get_origin(a) not in (Awaitable, pulumi.output.Output)
            and a is not pulumi.output.Output
        ]
        if len(members) == 1:
            return shape_of(members[0])
        return Shape("any"), False
    if origin is pulumi.output.Output:
        return shape_of(typing.get_args(annotation)[0])
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        return Shape("array", shape_of(item)[0]), False
    if origin is dict:
        value = typing.get_args(annotation)[1] if typing.get_args(annotation) else Any
        return Shape("map", shape_of(value)[0]), False
    if annotation is SecretStr:
        return Shape("string"), True
    if annotation is bool:
        return Shape("boolean"), False
    if annotation is int:
        return Shape("integer"), False
    if annotation is float:
        return Shape("number"), False
    if annotation in (str, ImageRef) or (
        inspect.isclass(annotation) and issubclass(annotation, enum.StrEnum)
    ):
        return Shape("string"), False
    if annotation in _TYPE_OF_MODEL:
        return Shape("object", ref=_TYPE_OF_MODEL[annotation]), False
    if annotation in _TYPE_OF_ARGS:
        return Shape("object", ref=_TYPE_OF_ARGS[annotation]), False
    return Shape("any"), False


def _clean(text: str) -> str:
    """Docstring markup as schema descriptions show it: ``size_gib`` -> `sizeGib`."""
    text = re.sub(r":class:`(\w+?)(Args)?`", r"`\1`", text)
    # The plugin's configuration keys are in its own namespace (``eci:region`` in Python).
    text = re.sub(r"\beci:(?=[a-zA-Z])", f"{PACKAGE}:", text)
    text = re.sub(
        r"``([^`]+)``",
        lambda m: f"`{to_camel(m[1]) if re.fullmatch(r'[a-z]+(_[a-z0-9]+)+', m[1]) else m[1]}`",
        text,
    )
    return " ".join(text.split())


def _doc_items(doc: str) -> list[str]:
    """The bullet items of a docstring (``- ...``, with their continuation lines)."""
    items: list[str] = []
    for line in inspect.cleandoc(doc).splitlines():
        stripped = line.strip()
        if stripped.startswith("- "):
            items.append(stripped[2:])
        elif items and line.startswith(" ") and stripped:
            items[-1] += " " + stripped
        elif not stripped and items:
            items.append("")  # a blank line ends the item
    return [i for i in items if i]


def docstring_descriptions(cls: type) -> dict[str, str]:
    """Each field's description: the docstring item that names it before its colon, else the
    first item that mentions it."""
    items = _doc_items(cls.__doc__ or "")
    found: dict[str, str] = {}
    for item in items:
        head, colon, body = item.partition(": ")
        if colon:
            for name in re.findall(r"``(\w+)``", head):
                found.setdefault(name, _clean(body))
    for item in items:
        for name in re.findall(r"``(\w+)``", item):
            found.setdefault(name, _clean(item))
    return found


def _summary(cls: type) -> str:
    return _clean(inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0])


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def args_type(name: str, args: type | None, model: type[BaseModel] | None) -> ObjectType:
    """Properties of an Args dataclass (or a model without one): names, required, docs;
    types from the model where it has the field."""
    described = docstring_descriptions(args) if args else {}
    result = ObjectType(name, _summary(args or model))  # type: ignore[arg-type]
    if args is not None:
        hints = _hints(args)
        fields = [(f.name, hints[f.name], _required(f)) for f in dataclasses.fields(args)]
    else:
        assert model is not None
        fields = [(n, f.annotation, f.is_required()) for n, f in model.model_fields.items()]
    for snake, annotation, required in fields:
        model_field = model.model_fields.get(snake) if model else None
        shape, secret = shape_of(model_field.annotation if model_field else annotation)
        if shape.kind == "any":  # e.g. list[Any] in the Args: the model may say more
            shape, secret = shape_of(annotation)
        prop = Prop(snake, shape, described.get(snake, ""), required, secret)
        result.props[prop.camel] = prop
    return result


@dataclass
class ResourceType:
    token: str
    inputs: ObjectType
    outputs: ObjectType  # output-only properties (every input is an output too)
    component: bool = False

    def all_props(self) -> dict[str, Prop]:
        return {**self.outputs.props, **self.inputs.props}

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "description": self.inputs.description,
            "inputProperties": self.inputs.spec()["properties"],
            "requiredInputs": self.inputs.spec()["required"],
            "properties": {n: p.spec() for n, p in self.all_props().items()},
        }
        if self.component:
            spec["isComponent"] = True
        return spec


def _resource(
    name: str, args: type, model: type[BaseModel], resource: type, description_from: type
) -> ResourceType:
    inputs = args_type(name, args, model)
    inputs.description = _summary(description_from)
    outputs = ObjectType(name, "")
    for snake, annotation in resource.__annotations__.items():
        prop = Prop(snake, shape_of(annotation)[0])
        if prop.camel not in inputs.props:
            outputs.props[prop.camel] = prop
    return ResourceType(token(name), inputs, outputs)


def _component() -> ResourceType:
    inputs = args_type("CachedContainerGroups", CachedContainerGroupsArgs, None)
    from ..components.cached_groups import CachedContainerGroups

    inputs.description = _summary(CachedContainerGroups)
    # What the component registers as its outputs (see ``CachedContainerGroups``).
    outputs = ObjectType("CachedContainerGroups", "")
    for prop in (
        Prop("cache_id", Shape("string"), "The id of the image cache the groups use."),
        Prop("groups", Shape("map", Shape("string")), "Each group's name -> its group id."),
    ):
        outputs.props[prop.camel] = prop
    return ResourceType(token("CachedContainerGroups"), inputs, outputs, component=True)


@cache
def resources() -> dict[str, ResourceType]:
    """The package's resources, by type token."""
    found = [
        _resource("ImageCache", ImageCacheArgs, ImageCacheSpec, ImageCache, ImageCache),
        _resource(
            "ContainerGroup", ContainerGroupArgs, ContainerGroupSpec, ContainerGroup, ContainerGroup
        ),
        _component(),
    ]
    return {r.token: r for r in found}


@cache
def object_types() -> dict[str, ObjectType]:
    return {name: args_type(name, args, model) for name, (args, model) in OBJECT_TYPES.items()}


# The provider's configuration: the dynamic providers' ``eci:*`` keys (see ``dynamic.settings``
# and ``dynamic.pricing``), in this package's namespace.
CONFIG: dict[str, Prop] = {
    p.camel: p
    for p in (
        Prop("backend", Shape("string"), "Where resources live: `local` (default) or `alicloud`."),
        Prop("region", Shape("string"), "The region (needed by the alicloud backend)."),
        Prop(
            "data_dir",
            Shape("string"),
            "The local backend's data directory (default: $ECI_IMAGECACHE_HOME or the user's "
            "data directory).",
        ),
        Prop(
            "endpoint", Shape("string"), "The ECI API endpoint (alicloud backend, or the emulator)."
        ),
        Prop(
            "operation_timeout",
            Shape("number"),
            "Seconds a hook waits for a build or a group (default 1800).",
        ),
        Prop(
            "access_key_id",
            Shape("string"),
            "Alibaba Cloud access key id (else the credential chain).",
        ),
        Prop("access_key_secret", Shape("string"), "Alibaba Cloud access key secret.", secret=True),
        Prop(
            "prices",
            Shape("map", Shape("any")),
            "Price overrides for the cost estimates (price name -> number).",
        ),
        Prop("prices_file", Shape("string"), "A JSON or YAML file of price overrides."),
    )
}


@cache
def schema() -> dict[str, Any]:
    return {
        "name": PACKAGE,
        "displayName": "ECI image cache",
        "version": VERSION,
        "description": "Alibaba Cloud ECI image caches and container groups that use them, "
        "with an embedded local backend.",
        "keywords": ["pulumi", "alicloud", "eci", "image-cache", "kind/native"],
        "license": "Apache-2.0",
        "config": {"variables": {n: p.spec() for n, p in CONFIG.items()}},
        "provider": {
            "description": "The eci-imagecache provider: where resources live, and timeouts.",
            "inputProperties": {n: p.spec() for n, p in CONFIG.items()},
        },
        "types": {token(name): t.spec() for name, t in object_types().items()},
        "resources": {tok: r.spec() for tok, r in resources().items()},
        "language": {
            "nodejs": {"packageName": "@eci-imagecache/pulumi", "respectSchemaVersion": True},
            "python": {"packageName": "eci_imagecache_sdk", "respectSchemaVersion": True},
            "go": {
                "importBasePath": "example.com/eci-imagecache/sdk/go/eciimagecache",
                "respectSchemaVersion": True,
            },
        },
    }


def schema_json() -> str:
    return json.dumps(schema(), indent=2, sort_keys=False)
