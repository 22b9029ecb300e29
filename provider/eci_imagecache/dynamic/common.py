"""Helpers shared by the providers: unknown values, input coercion, clean check failures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pulumi
from pulumi.dynamic import CheckFailure
from pydantic import BaseModel, ValidationError

from ..engine.models import validation_failures
from ..engine.refs import ImageRefError

M = TypeVar("M", bound=BaseModel)


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


def present(props: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """The fields that are set (None means "use the default")."""
    return {k: props[k] for k in fields if props.get(k) is not None}


def validate(build: Callable[[], M]) -> tuple[M | None, list[CheckFailure]]:
    """Run a model constructor; failures name the property, as ``check`` must."""
    try:
        return build(), []
    except ValidationError as err:
        return None, [CheckFailure(prop, reason) for prop, reason in validation_failures(err)]
    except ImageRefError as err:
        return None, [CheckFailure("images", str(err))]


def secret_credentials(credentials: list[Any]) -> list[dict[str, Any]]:
    """Registry credentials as inputs, the password always a secret (encrypted in state)."""
    return [
        {"server": c.server, "username": c.username, "password": pulumi.Output.secret(c.password)}
        for c in credentials
    ]


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
