"""The ``ImageCache`` resource: a manual image cache managed by Pulumi.

What the program imports. Its hooks (check, diff, create, read, update, delete) are in
``image_cache_provider``, which only the provider process imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.dynamic import Resource

from .common import (
    ProviderRef,
    args_from,
    evaluated_outputs,
    program_placement,
    resource_inputs,
    resource_key,
    secret_credentials,
    settle_outputs,
)
from .pricing import price_inputs

PROVIDER = ProviderRef(f"{__name__}_provider", "ImageCacheProvider")


@dataclass
class RegistryCredentialArgs:
    """Credentials for one private registry.

    - ``server``: the registry host (e.g. ``registry.example.com``).
    - ``username``: the user to sign in as.
    - ``password``: pass a secret (``config.require_secret``): it is encrypted in state and
      never shown.
    """

    server: pulumi.Input[str]
    username: pulumi.Input[str]
    password: pulumi.Input[str]


@dataclass
class ImageCacheArgs:
    """Arguments of an :class:`ImageCache`. ``None`` means the documented default.

    - ``images``: 1 to 20 image references (order and duplicates do not matter).
    - ``name``: the cache's name (default: the resource name).
    - ``size_gib``: the snapshot size in GiB (default 20); a change rebuilds.
    - ``retention_days``: delete the cache this many days after creation (default: keep).
    - ``eviction``: ``""`` (never evicted, the default) or ``"LRU"``.
    - ``instant``: usable as soon as a local snapshot exists (ECI's Flash); ``instant_copies``.
    - ``layer_reuse``: reuse layers other caches hold instead of fetching them again.
    - ``credentials``: :class:`RegistryCredentialArgs` for private registries.
    - ``insecure_registries`` / ``plain_http_registries``: hosts with self-signed TLS / no TLS.
    - ``vswitch_id``, ``security_group_id``, ``eip_instance_id``: where the build instance runs.
    - ``tags``: tags of the cache.
    - Alibaba Cloud only: ``resource_group_id``, ``zone_id`` (a change replaces),
      ``standard_copies`` (regular snapshot copies), ``acr_registries`` (ACR Enterprise
      instances pulled from without a password: ``{"instance_id", "domains", ...}``).
    - ``adopt_id``: an existing cache to bring under management instead of creating one.
    - ``backend`` / ``region``: where this cache lives, when not where the stack's
      ``eci:backend`` / ``eci:region`` say.

    pulumi-alicloud's names are accepted as keyword arguments too: ``image_cache_name``,
    ``image_cache_size``, ``image_registry_credentials`` (items with ``user_name``).
    """

    images: pulumi.Input[list[str]]
    name: pulumi.Input[str] | None = None
    size_gib: pulumi.Input[int] | None = None
    retention_days: pulumi.Input[int] | None = None
    eviction: pulumi.Input[str] | None = None
    instant: pulumi.Input[bool] | None = None
    instant_copies: pulumi.Input[int] | None = None
    layer_reuse: pulumi.Input[bool] | None = None
    credentials: list[Any] = field(default_factory=list)
    insecure_registries: list[str] = field(default_factory=list)
    plain_http_registries: list[str] = field(default_factory=list)
    vswitch_id: pulumi.Input[str] | None = None
    security_group_id: pulumi.Input[str] | None = None
    eip_instance_id: pulumi.Input[str] | None = None
    tags: dict[str, str] = field(default_factory=dict)
    resource_group_id: pulumi.Input[str] | None = None
    zone_id: pulumi.Input[str] | None = None
    standard_copies: pulumi.Input[int] | None = None
    acr_registries: list[dict[str, Any]] = field(default_factory=list)
    adopt_id: str | None = None
    backend: str | None = None
    region: str | None = None


# pulumi-alicloud's alicloud.eci.ImageCache argument names, accepted as keywords.
ALICLOUD_NAMES = {
    "image_cache_name": "name",
    "image_cache_size": "size_gib",
    "image_registry_credentials": "credentials",
}
ALICLOUD_UNSUPPORTED: dict[str, str] = {}  # every other name of theirs is ours too


@evaluated_outputs
class ImageCache(Resource, module="eci", name="ImageCache"):
    """A manual ECI image cache. Changing images or size rebuilds it in place.

    ``ImageCache("web", ImageCacheArgs(images=[...]))`` or ``ImageCache("web", images=[...])``.
    """

    cache_id: pulumi.Output[str]
    name: pulumi.Output[str]
    images: pulumi.Output[list[str]]
    size_gib: pulumi.Output[int]
    retention_days: pulumi.Output[int | None]
    eviction: pulumi.Output[str]
    kind: pulumi.Output[str]
    status: pulumi.Output[str]
    snapshot: pulumi.Output[str]
    progress: pulumi.Output[int]
    failure: pulumi.Output[str | None]
    created_at: pulumi.Output[str]
    expires_at: pulumi.Output[str | None]
    last_used_at: pulumi.Output[str | None]
    snapshot_id: pulumi.Output[str | None]
    layer_count: pulumi.Output[int]
    content_bytes: pulumi.Output[int]
    fetched_bytes: pulumi.Output[int]
    reused_bytes: pulumi.Output[int]
    build_plan: pulumi.Output[str]
    change: pulumi.Output[str]
    location: pulumi.Output[str]
    cost: pulumi.Output[dict[str, Any] | None]  # an estimate: build once, snapshot per month

    def __init__(
        self,
        resource_name: str,
        args: ImageCacheArgs | None = None,
        opts: pulumi.ResourceOptions | None = None,
        **kwargs: Any,
    ) -> None:
        args = args_from(ImageCacheArgs, args, kwargs, ALICLOUD_NAMES, ALICLOUD_UNSUPPORTED)
        props: dict[str, Any] = {
            **program_placement(args.backend, args.region),
            "name": args.name or resource_name,
            "images": args.images,
            "size_gib": args.size_gib,
            "retention_days": args.retention_days,
            "eviction": args.eviction,
            "instant": args.instant,
            "instant_copies": args.instant_copies,
            "layer_reuse": args.layer_reuse,
            "credentials": secret_credentials(args.credentials),
            "insecure_registries": args.insecure_registries,
            "plain_http_registries": args.plain_http_registries,
            "vswitch_id": args.vswitch_id,
            "security_group_id": args.security_group_id,
            "eip_instance_id": args.eip_instance_id,
            "tags": args.tags,
            "resource_group_id": args.resource_group_id,
            "zone_id": args.zone_id,
            "standard_copies": args.standard_copies,
            "acr_registries": args.acr_registries,
            "adopt_id": args.adopt_id,
            "resource_key": resource_key("eci:ImageCache", resource_name, opts),
            "prices": price_inputs(),
        }
        props, opts = resource_inputs(type(self), props, opts)
        super().__init__(PROVIDER, resource_name, props, opts)
        settle_outputs(self)
        _STACK_CACHES.append(self)
        self._declared = {
            "name": args.name or resource_name,
            "images": args.images,
            "size_gib": args.size_gib,
        }


# The caches this program declares, in order: a container group that matches automatically
# counts those being created or rebuilt in the same deployment (see ``container_group``).
_STACK_CACHES: list[ImageCache] = []


def __getattr__(name: str) -> Any:
    """``ImageCacheProvider`` here is the name resources created before the hooks moved to
    ``image_cache_provider`` carry in their state (the SDK pickled it by reference)."""
    if name == "ImageCacheProvider":
        from .image_cache_provider import ImageCacheProvider

        return ImageCacheProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
