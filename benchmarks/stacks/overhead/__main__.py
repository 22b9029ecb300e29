"""N resources: half image caches and half container groups on the local backend ("ours"), or
the same number of dynamic resources whose provider does nothing ("noop").

Each group names its cache and really runs its container (a job that prints a line and exits 0:
the group ends Succeeded, with no process left running between the benchmark's steps)."""

import pulumi
from pulumi.dynamic import CreateResult, Resource, ResourceProvider

from eci_imagecache.dynamic import (
    ContainerArgs,
    ContainerGroup,
    ContainerGroupArgs,
    ImageCache,
    ImageCacheArgs,
)

config = pulumi.Config()
count = config.require_int("count")
image = config.require("image")


class NoopProvider(ResourceProvider):
    serialize_as_secret_always = False

    def create(self, props):
        return CreateResult(id_=props["name"], outs=props)


class Noop(Resource, module="bench", name="Noop"):
    def __init__(self, name: str) -> None:
        super().__init__(NoopProvider(), name, {"name": name, "image": image})


if config.require("mode") == "noop":
    for i in range(count):
        Noop(f"noop-{i}")
else:
    for i in range(count // 2):
        cache = ImageCache(f"cache-{i}", ImageCacheArgs(images=[image], layer_reuse=True))
        ContainerGroup(
            f"group-{i}",
            ContainerGroupArgs(
                containers=[ContainerArgs(name="app", image=image)],
                cache_id=cache.id,
                restart_policy="Never",
            ),
        )
