"""Helpers shared by the resources and their providers: unknown values, the identity of a
resource, arguments given as an object or as keywords, and the provider a resource names.

The program imports this module (and the resource modules), so it stays light: the engine and
the backends (and through them the registry client) are imported by the providers' hooks
(``*_provider`` modules, see ``checks``), in the provider process only."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
from collections.abc import Mapping
from typing import Any, TypeVar

import pulumi
from pulumi.dynamic import ResourceProvider

CONFIG_NAMESPACE = "eci"

Props = dict[str, Any]
"""A resource's properties as the hooks get and give them: inputs, outputs or state."""

R = TypeVar("R", bound=type)


def is_unknown(value: Any) -> bool:
    """Preview passes values not yet known as ``pulumi.output.Unknown`` (or containing them)."""
    if isinstance(value, pulumi.output.Unknown):
        return True
    if isinstance(value, list | tuple):
        return any(is_unknown(v) for v in value)
    if isinstance(value, dict):
        return any(is_unknown(v) for v in value.values())
    return False


def unknown_keys(props: dict[str, Any]) -> list[str]:
    return sorted(k for k, v in props.items() if is_unknown(v))


def given_fields(props: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """Of ``fields``, those ``props`` give a value (None means "use the default")."""
    return {k: props[k] for k in fields if props.get(k) is not None}


def _field(item: Any, *names: str) -> Any:
    for name in names:
        if isinstance(item, Mapping) and item.get(name) is not None:
            return item[name]
        value = getattr(item, name, None)
        if value is None and not isinstance(item, Mapping):
            try:  # pulumi input types (e.g. pulumi-alicloud's) keep their values behind pulumi.get
                value = pulumi.get(item, name)
            except (AttributeError, KeyError, TypeError):
                value = None
        if value is not None:
            return value
    return None


def secret_credentials(credentials: Any) -> Any:
    """Registry credentials as inputs, the password always a secret (encrypted in state).

    Items may be our ``RegistryCredentialArgs``, dicts, or pulumi-alicloud's credential args
    (``user_name`` for ``username``). Something else than a list is kept secret whole, for
    ``check`` to refuse."""
    if not isinstance(credentials, list | tuple):
        return pulumi.Output.secret(credentials) if credentials is not None else None
    return [
        {
            "server": _field(c, "server"),
            "username": _field(c, "username", "user_name"),
            "password": pulumi.Output.secret(_field(c, "password")),
        }
        for c in credentials
    ]


def program_placement(backend: str | None, region: str | None) -> Props:
    """The ``backend`` and ``region`` inputs a resource registers: its own, or the stack's
    (``eci:backend``, ``eci:region``), so that policies and reviews can read them."""
    config = pulumi.Config(CONFIG_NAMESPACE)
    backend = backend or config.get("backend") or "local"
    region = region or config.get("region") or ("local" if backend == "local" else None)
    return {"backend": backend, "region": region}


class ProviderRef(ResourceProvider):
    """The provider a resource names, as the program hands it to the SDK: the module and class
    of its hooks. The SDK pickles it into every resource (``__provider``); unpickled in the
    provider process, it is that provider. So the program never imports the hooks, nor the
    engine, backends and registry client behind them (about 0.25 s of every ``pulumi`` run)."""

    serialize_as_secret_always = False

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return load_provider, (self.module, self.name)


def load_provider(module: str, name: str) -> ResourceProvider:
    """The provider a :class:`ProviderRef` names (called when it is unpickled)."""
    provider: ResourceProvider = getattr(importlib.import_module(module), name)()
    return provider


def resource_key(type_name: str, resource_name: str, opts: pulumi.ResourceOptions | None) -> str:
    """What identifies a resource across deployments: organization, project, stack, parent,
    type and name (the parts of its URN that a program controls)."""
    parent = getattr(opts.parent, "_name", "") if opts and opts.parent else ""
    parts = [pulumi.get_organization(), pulumi.get_project(), pulumi.get_stack(), parent]
    return "/".join([*(str(p or "") for p in parts), type_name, resource_name])


def client_token(key: str, generation: int) -> str:
    """The idempotency token of a create: the same resource and generation give the same token,
    so a create repeated after an interrupted deployment finds what the first one made."""
    digest = hashlib.sha256(f"{key}#{generation}".encode()).hexdigest()
    return f"pulumi-{digest[:40]}"


def next_generation(olds: Mapping[str, Any]) -> int:
    """0 for a first create. Every later deployment of the resource moves it on, so a create
    that replaces the resource never finds the cache it replaces."""
    if not olds:
        return 0
    try:
        return int(olds.get("generation") or 0) + 1
    except (TypeError, ValueError):
        return 1


A = TypeVar("A")


def args_from(
    cls: type[A],
    args: A | Mapping[str, Any] | None,
    kwargs: dict[str, Any],
    aliases: Mapping[str, str] = {},
    unsupported: Mapping[str, str] = {},
) -> A:
    """A resource's arguments from an args object, a dict, or keyword arguments (as generated
    Pulumi SDKs accept them). ``aliases`` maps other names (e.g. pulumi-alicloud's) to ours."""
    if args is not None and kwargs:
        raise TypeError(f"{cls.__name__}: give an args object or keyword arguments, not both")
    if isinstance(args, cls):
        return args
    given = dict(args if isinstance(args, Mapping) else kwargs)
    if args is not None and not isinstance(args, Mapping):
        raise TypeError(f"expected {cls.__name__}, got {type(args).__name__}")
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, value in given.items():
        if key in unsupported:
            raise TypeError(f"{cls.__name__}: {key} is not supported: {unsupported[key]}")
        target = aliases.get(key, key)
        if target not in fields:
            raise TypeError(
                f"{cls.__name__}: unknown argument {key!r}; expected one of "
                + ", ".join(sorted(fields | set(aliases)))
            )
        if target in values:
            raise TypeError(f"{cls.__name__}: {key!r} and {target!r} name the same argument")
        values[target] = value
    return cls(**values)


def resource_inputs(
    resource_class: type, props: dict[str, Any], opts: pulumi.ResourceOptions | None
) -> tuple[dict[str, Any], pulumi.ResourceOptions]:
    """The inputs and options every resource of ours registers with.

    Unset inputs are left out (fewer properties to send, store and diff). Every output the class
    declares (its annotations) is then added as ``None``: a dynamic resource's outputs can be
    read from it only if their keys are present at construction. Credentials stay secret in the
    outputs too.
    """
    props = {k: v for k, v in props.items() if v not in (None, [], {})}
    for cls in reversed(resource_class.__mro__):
        for key in getattr(cls, "__annotations__", {}):
            if not key.startswith("_") and cls.__module__.startswith("eci_imagecache"):
                props.setdefault(key, None)
    secret = pulumi.ResourceOptions(additional_secret_outputs=["credentials"])
    return props, pulumi.ResourceOptions.merge(opts, secret)


def settle_outputs(resource: pulumi.Resource) -> None:
    """Leave the resolution of a resource's property outputs to its registration.

    The SDK tracks every ``Output`` it makes, and before the program ends it waits for them
    with ``asyncio.wait`` on all that are pending, again after each one resolves: its cost
    grows with the square of the number of pending outputs, and every property of every
    resource is one. A resource's property outputs are resolved by its registration, which
    the SDK awaits anyway (an error reaches the program through it, and through ``id`` and
    ``urn``, which stay tracked); outputs derived from them (``apply``) are tracked as usual.
    """
    for key, value in vars(resource).items():
        if isinstance(value, pulumi.Output) and key not in ("id", "urn"):
            value._untrack()


def evaluated_outputs(resource_class: R) -> R:
    """Evaluate a resource class's output annotations once, when the class is defined.

    The SDK reads them (``typing.get_type_hints``) each time a resource's outputs arrive, to
    convert the values (e.g. a number to ``int``). Written as strings (``from __future__ import
    annotations``) every one is compiled and evaluated again for every resource; evaluated here,
    the SDK finds the types themselves. The types are the same either way."""
    resource_class.__annotations__ = inspect.get_annotations(resource_class, eval_str=True)
    return resource_class
