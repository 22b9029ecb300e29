"""One cache for a set of images, and container groups that use it: the common case, one set of
arguments."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pulumi

from ..dynamic.common import args_from
from ..dynamic.container_group import ContainerArgs, ContainerGroup, ContainerGroupArgs
from ..dynamic.image_cache import ImageCache, ImageCacheArgs, RegistryCredentialArgs


@dataclass
class CachedContainerGroupsArgs:
    """Arguments of :class:`CachedContainerGroups`.

    - ``groups``: group name -> its :class:`ContainerArgs`; each becomes a ``ContainerGroup``
      named ``<component>-<group>`` that uses the cache explicitly.
    - ``extra_images``: cached too, used by no group yet.
    - ``size_gib``, ``retention_days``, ``eviction``, ``instant``, ``layer_reuse``: the
      cache's settings, as in :class:`ImageCacheArgs`.
    - ``extra_ephemeral_storage_gib``: every group's storage beyond the 30 GiB included.
    - ``credentials``, ``plain_http_registries``, ``insecure_registries``: for the cache's
      build and the groups' pulls alike.
    - ``vswitch_id``, ``security_group_id``, ``tags``: cloud placement of the cache's build
      instance and of the groups.
    """

    groups: dict[str, list[ContainerArgs]]
    extra_images: list[str] = field(default_factory=list)
    size_gib: int | None = None
    retention_days: int | None = None
    eviction: str | None = None
    instant: bool | None = None
    layer_reuse: bool | None = None
    extra_ephemeral_storage_gib: int | None = None
    credentials: list[RegistryCredentialArgs] = field(default_factory=list)
    plain_http_registries: list[str] = field(default_factory=list)
    insecure_registries: list[str] = field(default_factory=list)
    vswitch_id: pulumi.Input[str] | None = None
    security_group_id: pulumi.Input[str] | None = None
    tags: dict[str, str] = field(default_factory=dict)


def images_of(containers: Any) -> list[str]:
    """The images (references) of a group's containers (:class:`ContainerArgs` or dicts);
    anything else is left for the group's ``check`` to refuse, naming the property."""
    if not isinstance(containers, list | tuple):
        return []
    found = (
        c.image if isinstance(c, ContainerArgs) else c.get("image")
        for c in containers
        if isinstance(c, ContainerArgs | dict)
    )
    return [image for image in found if isinstance(image, str)]


class CachedContainerGroups(pulumi.ComponentResource):
    """An :class:`ImageCache` holding every image of ``groups``, and one
    :class:`ContainerGroup` per entry, each using that cache explicitly."""

    cache: ImageCache
    groups: dict[str, ContainerGroup]
    # The resources it is made of: the plugin's face (``plugin.component``) builds the same
    # component from its own resource classes, which take the same Args.
    cache_class: ClassVar[Callable[..., Any]] = ImageCache
    group_class: ClassVar[Callable[..., Any]] = ContainerGroup

    def __init__(
        self,
        name: str,
        args: CachedContainerGroupsArgs | None = None,
        opts: pulumi.ResourceOptions | None = None,
        **kwargs: Any,
    ) -> None:
        args = args_from(CachedContainerGroupsArgs, args, kwargs)
        super().__init__("eci-imagecache:index:CachedContainerGroups", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        images = sorted(
            {image for cs in args.groups.values() for image in images_of(cs)}
            | set(args.extra_images)
        )
        shared = {
            "plain_http_registries": args.plain_http_registries,
            "insecure_registries": args.insecure_registries,
            "credentials": args.credentials,
            "vswitch_id": args.vswitch_id,
            "security_group_id": args.security_group_id,
            "tags": args.tags,
        }
        self.cache = self.cache_class(
            name,
            ImageCacheArgs(
                images=images,
                size_gib=args.size_gib,
                retention_days=args.retention_days,
                eviction=args.eviction,
                instant=args.instant,
                layer_reuse=args.layer_reuse,
                **shared,
            ),
            opts=child,
        )
        self.groups = {
            group: self.group_class(
                f"{name}-{group}",
                ContainerGroupArgs(
                    containers=containers,
                    cache="explicit",
                    cache_id=self.cache.id,
                    extra_ephemeral_storage_gib=args.extra_ephemeral_storage_gib,
                    **shared,
                ),
                opts=child,
            )
            for group, containers in args.groups.items()
        }
        self.register_outputs(
            {
                "cache_id": self.cache.id,
                "groups": {g: r.group_id for g, r in self.groups.items()},
            }
        )
