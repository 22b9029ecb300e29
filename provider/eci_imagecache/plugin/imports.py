"""``pulumi import``: a resource read by its id alone, with the inputs that declare it.

The engine's Read for an import carries no inputs and no state (which is why the dynamic
providers cannot import). The backend's record says what the resource is; the inputs are the
settings it holds that differ from the defaults, so the code ``pulumi import`` generates from
them is short and a preview of it shows no changes. The outputs are the hooks' own
(``outputs_of``), as a read of a resource in state gives them.
"""

from __future__ import annotations

from typing import Any

from ..dynamic import container_group_provider, image_cache_provider
from ..dynamic.configured_provider import ConfiguredProvider
from ..dynamic.sdk_server_patch import UserError
from ..engine.models import CacheKind, EvictionStrategy
from .schema import token


class NotImportable(UserError):
    """A resource this package cannot take over."""


def cache_inputs(record: Any) -> dict[str, Any]:
    """The inputs that declare an image cache as its record holds it."""
    if record.kind != CacheKind.MANUAL:
        raise NotImportable(
            f"image cache {record.id} was created automatically (for a container group): "
            "only manual caches can be managed"
        )
    props = image_cache_provider.record_props(record)
    inputs: dict[str, Any] = {
        "name": props["name"],
        "images": props["images"],
        "size_gib": props["size_gib"],
    }
    if props["retention_days"] is not None:
        inputs["retention_days"] = props["retention_days"]
    if props["eviction"] != EvictionStrategy.NEVER.value:
        inputs["eviction"] = props["eviction"]
    if record.instant:
        inputs["instant"] = True
    if record.layer_reuse:
        inputs["layer_reuse"] = True
    if record.tags:
        inputs["tags"] = record.tags
    if record.resource_group_id:
        inputs["resource_group_id"] = record.resource_group_id
    return inputs


def imported(
    hooks: ConfiguredProvider, type_token: str, resource_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(inputs, outputs) of the resource ``resource_id`` in the configured backend;
    ``NotFound`` when there is none."""
    settings = hooks.settings_for({})
    backend = hooks.backend_of({})
    if type_token == token("ImageCache"):
        record = backend.get_image_cache(resource_id)
        inputs = cache_inputs(record)
        outputs = image_cache_provider.outputs_of(record, {**inputs, "location": settings.location})
        return inputs, outputs
    record = backend.get_container_group(resource_id)
    inputs = group_inputs(record)
    outputs = container_group_provider.outputs_of(record, {**inputs, "location": settings.location})
    return inputs, outputs


def group_inputs(record: Any) -> dict[str, Any]:
    """The inputs that declare a container group as its record holds it."""
    declared = getattr(record, "declared", None)
    if not declared:
        raise NotImportable(
            f"container group {record.id} does not record what it was created with "
            "(its backend keeps no declaration): it cannot be imported"
        )
    return dict(declared)
