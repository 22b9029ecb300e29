"""One cache for a set of images, and container groups that use it: the common case, one set of
arguments."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from ..dynamic.container_group import ContainerArgs, ContainerGroup, ContainerGroupArgs
from ..dynamic.image_cache import ImageCache, ImageCacheArgs, RegistryCredentialArgs


@dataclass
class CachedContainerGroupsArgs:
    groups: dict[str, list[ContainerArgs]]  # group name -> its containers
    extra_images: list[str] = field(default_factory=list)  # cached too, used by no group yet
    size_gib: int | None = None
    retention_days: int | None = None
    eviction: str | None = None
    instant: bool | None = None
    layer_reuse: bool | None = None
    extra_ephemeral_storage_gib: int | None = None
    credentials: list[RegistryCredentialArgs] = field(default_factory=list)
    plain_http_registries: list[str] = field(default_factory=list)
    insecure_registries: list[str] = field(default_factory=list)
    # Cloud placement of the cache's build instance and of the groups.
    vswitch_id: pulumi.Input[str] | None = None
    security_group_id: pulumi.Input[str] | None = None
    tags: dict[str, str] = field(default_factory=dict)


class CachedContainerGroups(pulumi.ComponentResource):
    """An :class:`ImageCache` holding every image of ``groups``, and one
    :class:`ContainerGroup` per entry, each using that cache explicitly."""

    cache: ImageCache
    groups: dict[str, ContainerGroup]

    def __init__(
        self, name: str, args: CachedContainerGroupsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("eci-imagecache:index:CachedContainerGroups", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        images = sorted(
            {c.image for cs in args.groups.values() for c in cs} | set(args.extra_images)
        )
        shared = {
            "plain_http_registries": args.plain_http_registries,
            "insecure_registries": args.insecure_registries,
            "credentials": args.credentials,
            "vswitch_id": args.vswitch_id,
            "security_group_id": args.security_group_id,
            "tags": args.tags,
        }
        self.cache = ImageCache(
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
            group: ContainerGroup(
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
