"""``CachedContainerGroups`` through ``construct``: the Python component itself, built from the
plugin's resources (``eci-imagecache:index:ImageCache`` / ``ContainerGroup``, served by this
plugin) instead of the dynamic ones. Which images the cache holds and how the groups use it is
decided in ``components.cached_groups`` alone."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pulumi
from pulumi.errors import InputPropertiesError
from pulumi.provider.experimental import provider as api
from pulumi.provider.experimental.property_value import PropertyValue

from ..components.cached_groups import CachedContainerGroups, CachedContainerGroupsArgs
from ..dynamic.container_group import ContainerArgs
from ..dynamic.image_cache import RegistryCredentialArgs
from .schema import resources, token
from .values import UNKNOWN, as_failure, names, object_failures, to_property, to_python


def _unknown() -> pulumi.Output[Any]:
    """An output whose value is not known (an input the program's preview does not know)."""
    known: asyncio.Future[bool] = asyncio.get_event_loop().create_future()
    known.set_result(False)
    value: asyncio.Future[Any] = asyncio.get_event_loop().create_future()
    value.set_result(None)
    return pulumi.Output(set(), value, known)


def _inputs(value: Any) -> Any:
    """A hook-shaped value with unknowns as unknown outputs, as resources take them."""
    if value is UNKNOWN:
        return _unknown()
    if isinstance(value, dict):
        return {k: _inputs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_inputs(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    """An Args object as resource inputs: nested Args as dicts, registry passwords secret."""
    if isinstance(value, ContainerArgs):
        return value.to_input()
    if isinstance(value, RegistryCredentialArgs):
        return {
            "server": value.server,
            "username": value.username,
            "password": pulumi.Output.secret(value.password),
        }
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class _PluginResource(pulumi.CustomResource):
    """A resource of this plugin, registered from an Args object as the dynamic face's."""

    type_name = ""

    def __init__(self, name: str, args: Any, opts: pulumi.ResourceOptions | None = None) -> None:
        rtype = resources()[token(self.type_name)]
        props = {
            f.name: _plain(getattr(args, f.name))
            for f in dataclasses.fields(args)
            if getattr(args, f.name) not in (None, [], {})
        }
        camel = names(props, rtype.inputs.props, to_hooks=False)
        secret = pulumi.ResourceOptions(additional_secret_outputs=["credentials"])
        super().__init__(
            token(self.type_name), name, camel, pulumi.ResourceOptions.merge(opts, secret)
        )


class PluginImageCache(_PluginResource):
    type_name = "ImageCache"


class PluginContainerGroup(_PluginResource):
    type_name = "ContainerGroup"

    @property
    def group_id(self) -> pulumi.Output[str]:
        return self.id


class PluginCachedContainerGroups(CachedContainerGroups):
    cache_class = PluginImageCache
    group_class = PluginContainerGroup


def component_args(inputs: dict[str, Any]) -> CachedContainerGroupsArgs:
    """The component's Args from its (hook-shaped) inputs."""
    values = {k: _inputs(v) for k, v in inputs.items() if v is not None}
    values["groups"] = {
        group: [ContainerArgs(**c) for c in containers]
        for group, containers in values["groups"].items()
    }
    values["credentials"] = [RegistryCredentialArgs(**c) for c in values.get("credentials", [])]
    fields = {f.name for f in dataclasses.fields(CachedContainerGroupsArgs)}
    return CachedContainerGroupsArgs(**{k: v for k, v in values.items() if k in fields})


async def _state(output: pulumi.Output[Any]) -> PropertyValue:
    """An output as the construct's state: its value (or unknown), secret, dependencies."""
    known = await output.is_known()
    secret = await output.is_secret()
    urns = {await r.urn.future() for r in await output.resources()}
    value = to_property(await output.future() if known else UNKNOWN)
    return value.with_secret(secret).with_dependencies(urns)


async def construct(request: api.ConstructRequest) -> api.ConstructResponse:
    rtype = resources()[token("CachedContainerGroups")]
    if request.resource_type != rtype.token:
        raise InputPropertiesError(f"no component {request.resource_type}", [])
    given = {k: to_python(v) for k, v in request.inputs.items()}
    malformed = [as_failure(path, why) for path, why in object_failures(given, rtype.inputs.props)]
    if malformed:
        raise InputPropertiesError(
            f"{request.name}: "
            + "; ".join(
                why if why.startswith((f"{prop}.", f"{prop}[")) else f"{prop}: {why}"
                for prop, why in malformed
            ),
            [{"property_path": path, "reason": reason} for path, reason in malformed],
        )
    args = component_args(names(given, rtype.inputs.props, to_hooks=True))
    component = PluginCachedContainerGroups(request.name, args, request.options)
    groups = {g: r.id for g, r in component.groups.items()}
    state = {
        "cacheId": await _state(component.cache.id),
        "groups": await _state(pulumi.Output.all(**groups)) if groups else PropertyValue({}),
    }
    return api.ConstructResponse(await component.urn.future(), state, {})
