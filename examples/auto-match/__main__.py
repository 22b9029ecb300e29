"""A container group with automatic matching: the cache comes from whatever already exists."""

import pulumi

from eci_imagecache.dynamic import ContainerArgs, ContainerGroup, ContainerGroupArgs

config = pulumi.Config()
group = ContainerGroup(
    "api",
    ContainerGroupArgs(
        name=config.get("groupName"),
        containers=[ContainerArgs(name="api", image=config.require("image"))],
        cache=config.get("cache") or ("explicit" if config.get("cacheId") else "auto-create"),
        cache_id=config.get("cacheId"),
        extra_ephemeral_storage_gib=config.get_int("extraStorageGib"),
    ),
)
pulumi.export("cache_used", group.cache_used)
pulumi.export("match_degree", group.match_degree)
pulumi.export("match_reason", group.match_reason)
pulumi.export("auto_created_cache_id", group.auto_created_cache_id)
