"""The plugin's provider: the protocol's hooks, each a translation around the dynamic
providers' hook of the same name (``dynamic/*_provider``), which decide everything.

The hooks are synchronous (a build can take minutes): each runs in a worker thread, so the
engine's other requests are answered meanwhile, as the dynamic providers' server does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from pulumi.dynamic import CheckFailure
from pulumi.dynamic import ConfigureRequest as HooksConfigure
from pulumi.provider.experimental import provider as api
from pulumi.provider.experimental.property_value import PropertyValue

from ..backends.base import BackendError, NotFound
from ..dynamic import container_group_provider, image_cache_provider, sdk_server_patch
from ..dynamic.checks import PropertyFailure
from ..dynamic.configured_provider import ConfiguredProvider, backend_errors
from ..dynamic.pricing import PriceConfigError, price_overrides
from ..dynamic.sdk_server_patch import ResourceInitFailed, UserError
from . import imports
from .schema import CONFIG, PACKAGE, VERSION, ResourceType, resources, schema_json, token
from .values import (
    as_failure,
    camel_path,
    names,
    object_failures,
    to_property,
    to_python,
)

# Where the hooks' messages name a configuration key, they name the dynamic providers' one.
_DYNAMIC_KEY = re.compile(r"\beci:(?=[a-zA-Z])")
SECRET_ALWAYS = ("credentials",)  # registry passwords are inside


def renamed(message: str) -> str:
    """A hook's message as the plugin's users configure it (``eci:region`` ->
    ``eci-imagecache:region``)."""
    return _DYNAMIC_KEY.sub(f"{PACKAGE}:", message)


def _failure(failure: CheckFailure) -> api.CheckFailure:
    """A hook's check failure as the plugin's users write the inputs: the property and the
    place within it (a :class:`PropertyFailure`'s) in camelCase."""
    reason = failure.reason
    if isinstance(failure, PropertyFailure) and failure.place:
        reason = f"{camel_path(failure.place)}: {failure.message}"
    return api.CheckFailure(camel_path(failure.property or ""), renamed(reason))


class PluginConfig:
    """The provider's configuration as the hooks read it: ``eci:<key>`` for each
    ``eci-imagecache:<key>`` (see ``dynamic.settings``)."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = dict(values)

    def get(self, key: str) -> Any:
        return self.values.get(key.removeprefix("eci:"))


def config_values(request: api.ConfigureRequest) -> dict[str, Any]:
    """The configuration a ``Configure`` carries: the provider's inputs, else the variables
    (``eci-imagecache:config:<key>``)."""
    values: dict[str, Any] = {}
    for key, value in request.variables.items():
        name = key.rsplit(":", 1)[-1]
        if key.startswith(f"{PACKAGE}:") and name in CONFIG:
            values[name] = value
    for name, value in request.args.items():
        if name in CONFIG:
            values[name] = to_python(value)
    prices = values.get("prices")
    if isinstance(prices, str):  # an object in the stack's config arrives as JSON text
        with contextlib.suppress(ValueError):
            values["prices"] = json.loads(prices)
    return {k: v for k, v in values.items() if v not in (None, "")}


def _secret_keys(*maps: Mapping[str, PropertyValue]) -> set[str]:
    return {k for m in maps for k, v in m.items() if v.contains_secret()} | set(SECRET_ALWAYS)


def _properties(props: Mapping[str, Any], rtype: ResourceType, secret: set[str]):
    """Hook output (snake_case) as protocol properties; ``secret`` keys stay secret."""
    camel = names(props, rtype.all_props(), to_hooks=False)
    return {k: to_property(v, secret=k in secret and v is not None) for k, v in camel.items()}


async def _run(hook: Callable[..., Any], *args: Any) -> Any:
    """A hook in a worker thread; a diff's detail is taken in the same thread."""

    def call() -> Any:
        try:
            return hook(*args), sdk_server_patch.take_detailed_diff()
        except BackendError as err:
            raise UserError(str(err)) from err
        except ResourceInitFailed as err:
            raise ResourceInitFailed(renamed(str(err)), err.id, err.outs) from None
        except UserError as err:
            raise UserError(renamed(str(err))) from err

    return await asyncio.to_thread(call)


class PartialState(UserError):
    """A create or update that made the resource but did not bring it up (a hook's
    :class:`ResourceInitFailed`), with its outputs as protocol properties: the server sends
    them as ``ErrorResourceInitFailed`` (see ``main``), and the engine keeps the resource."""

    def __init__(self, message: str, id_: str, properties: dict[str, PropertyValue]) -> None:
        super().__init__(message)
        self.id = id_
        self.properties = properties


@contextlib.contextmanager
def _partial_state(rtype: ResourceType, secret: set[str]) -> Any:
    try:
        yield
    except ResourceInitFailed as failed:
        properties = _properties(failed.outs, rtype, secret)
        raise PartialState(str(failed), failed.id, properties) from None


class EciImageCacheProvider(api.Provider):
    def __init__(self) -> None:
        self.hooks: dict[str, ConfiguredProvider] = {
            token("ImageCache"): image_cache_provider.ImageCacheProvider(),
            token("ContainerGroup"): container_group_provider.ContainerGroupProvider(),
        }
        self.prices: dict[str, Any] | None = None
        self._configure({})

    def _configure(self, values: Mapping[str, Any]) -> None:
        source = PluginConfig(values)
        for hooks in self.hooks.values():
            hooks.configure(HooksConfigure(source))  # type: ignore[arg-type]

    def _of(self, type_token: str) -> tuple[ConfiguredProvider, ResourceType]:
        # A child's URN names its parents' types too: "Parent$Child".
        type_token = type_token.rsplit("$", 1)[-1]
        if type_token not in self.hooks:
            raise UserError(f"{PACKAGE} has no resource type {type_token}")
        return self.hooks[type_token], resources()[type_token]

    def _hook_props(self, props: Mapping[str, PropertyValue], rtype: ResourceType) -> dict:
        return names({k: to_python(v) for k, v in props.items()}, rtype.all_props(), to_hooks=True)

    async def get_schema(self, request: api.GetSchemaRequest) -> api.GetSchemaResponse:
        return api.GetSchemaResponse(schema=schema_json())

    async def configure(self, request: api.ConfigureRequest) -> api.ConfigureResponse:
        values = config_values(request)
        try:
            self.prices = price_overrides(values.get("pricesFile"), values.get("prices"), PACKAGE)
        except PriceConfigError as err:
            raise UserError(str(err)) from None
        self._configure(values)
        # No preview creates: the engine shows the checked inputs (with the build plan and
        # the match preview) as the outputs to be.
        return api.ConfigureResponse(accept_secrets=True, supports_preview=False)

    async def check(self, request: api.CheckRequest) -> api.CheckResponse:
        hooks, rtype = self._of(request.type)
        given = {k: to_python(v) for k, v in request.new_inputs.items()}
        malformed = object_failures(given, rtype.inputs.props)
        if malformed:
            return api.CheckResponse(
                inputs=request.new_inputs,
                failures=[api.CheckFailure(*as_failure(path, why)) for path, why in malformed],
            )
        news = self._hook_props(request.new_inputs, rtype)
        olds = self._hook_props(request.old_inputs, rtype)
        if news.get("name") is None:
            news["name"] = request.name  # as the dynamic resources default it
        settings = hooks.settings_for(news)
        if news.get("backend") is None and not settings.problem:
            # Where it lives, recorded as the dynamic resources record it (the program puts the
            # stack's eci:backend / eci:region there): the diff rules depend on the backend. A
            # configuration problem is left for the hook to report.
            news["backend"] = settings.backend
            news["region"] = news.get("region") or settings.region
        news["resource_key"] = request.urn  # what identifies its creates (client tokens)
        if self.prices:
            news["prices"] = self.prices
        result, _ = await _run(hooks.check, olds, news)
        secret = _secret_keys(request.new_inputs)
        return api.CheckResponse(
            inputs=_properties(result.inputs, rtype, secret),
            failures=[_failure(f) for f in result.failures or []],
        )

    async def diff(self, request: api.DiffRequest) -> api.DiffResponse:
        hooks, rtype = self._of(request.type)
        olds = self._hook_props(request.old_state, rtype)
        news = self._hook_props(request.new_inputs, rtype)
        result, detail = await _run(hooks.diff, request.resource_id, olds, news)
        kinds = api.PropertyDiffKind
        detailed = {
            camel_path(path): api.PropertyDiff(kinds[kind], input_diff=False)
            for path, kind in (detail or {}).items()
        }
        return api.DiffResponse(
            changes=bool(result.changes),
            replaces=[camel_path(p) for p in result.replaces or []],
            stables=[camel_path(p) for p in result.stables or []],
            delete_before_replace=bool(result.delete_before_replace),
            diffs=sorted({p.split(".")[0].split("[")[0] for p in detailed}),
            detailed_diff=detailed,
        )

    async def create(self, request: api.CreateRequest) -> api.CreateResponse:
        hooks, rtype = self._of(request.type)
        with _partial_state(rtype, _secret_keys(request.properties)):
            result, _ = await _run(hooks.create, self._hook_props(request.properties, rtype))
        return api.CreateResponse(
            resource_id=result.id,
            properties=_properties(result.outs, rtype, _secret_keys(request.properties)),
        )

    async def read(self, request: api.ReadRequest) -> api.ReadResponse:
        hooks, rtype = self._of(request.type)
        if not request.properties and not request.inputs:
            return await self._import(hooks, rtype, request.resource_id)
        props = self._hook_props(request.properties, rtype)
        result, _ = await _run(hooks.read, request.resource_id, props)
        if not result.id:
            return api.ReadResponse(resource_id=None)
        secret = _secret_keys(request.properties, request.inputs)
        inputs = (
            _properties(result.inputs, rtype, secret)
            if result.inputs is not None
            else request.inputs
        )
        return api.ReadResponse(
            resource_id=result.id,
            properties=_properties(result.outs, rtype, secret),
            inputs=inputs,
        )

    async def _import(
        self, hooks: ConfiguredProvider, rtype: ResourceType, resource_id: str
    ) -> api.ReadResponse:
        """``pulumi import``: the resource by its id alone; the inputs are what the backend
        says the resource is, so the program generated from them previews with no changes."""

        def read() -> tuple[dict[str, Any], dict[str, Any]] | None:
            with backend_errors(), contextlib.suppress(NotFound):
                return imports.imported(hooks, rtype.token, resource_id)
            return None

        found, _ = await _run(read)
        if found is None:
            return api.ReadResponse(resource_id=None)
        inputs, outputs = found
        return api.ReadResponse(
            resource_id=resource_id,
            properties=_properties(outputs, rtype, set(SECRET_ALWAYS)),
            inputs=_properties(inputs, rtype, set(SECRET_ALWAYS)),
        )

    async def update(self, request: api.UpdateRequest) -> api.UpdateResponse:
        hooks, rtype = self._of(request.type)
        olds = self._hook_props(request.olds, rtype)
        news = self._hook_props(request.news, rtype)
        with _partial_state(rtype, _secret_keys(request.news)):
            result, _ = await _run(hooks.update, request.resource_id, olds, news)
        return api.UpdateResponse(
            properties=_properties(result.outs, rtype, _secret_keys(request.news))
        )

    async def delete(self, request: api.DeleteRequest) -> None:
        hooks, rtype = self._of(request.type)
        await _run(hooks.delete, request.resource_id, self._hook_props(request.properties, rtype))

    async def construct(self, request: api.ConstructRequest) -> api.ConstructResponse:
        from .component import construct

        return await construct(request)


__all__ = ["VERSION", "EciImageCacheProvider"]
