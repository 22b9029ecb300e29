"""N resources: half image caches and half container groups on the local backend ("ours"); the
same number of dynamic resources whose provider does nothing, with two values each ("noop");
or resources that carry exactly ours' inputs and outputs and do the same builds and starts
through the backend's API, without our hooks ("same_values", see same_values.py).

Each group names its cache and really runs its container (a job that prints a line and exits 0:
the group ends Succeeded, with no process left running between the benchmark's steps)."""

import json
import os
from pathlib import Path

import pulumi
from pulumi.dynamic import CreateResult, Resource, ResourceProvider

from eci_imagecache.dynamic import (
    ContainerArgs,
    ContainerGroup,
    ContainerGroupArgs,
    ImageCache,
    ImageCacheArgs,
)
from eci_imagecache.dynamic.common import ProviderRef

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


class SameValuesCache(Resource, module="bench", name="SameValuesCache"):
    def __init__(self, name: str, inputs: dict) -> None:
        super().__init__(ProviderRef("same_values", "CacheProvider"), name, inputs)


class SameValuesGroup(Resource, module="bench", name="SameValuesGroup"):
    def __init__(self, name: str, inputs: dict) -> None:
        super().__init__(ProviderRef("same_values", "GroupProvider"), name, inputs)


mode = config.require("mode")
if mode == "noop":
    for i in range(count):
        Noop(f"noop-{i}")
elif mode == "same_values":
    from same_values import CHECK_FILLS

    captured = json.loads(Path(os.environ["ECI_BENCH_SAME_VALUES"]).read_text())

    def registered(kind: str, **values: object) -> dict:
        """What ours' program registers: every output key as None, then its inputs (what its
        check stored, but for what that check computes)."""
        inputs = {k: v for k, v in captured[kind]["inputs"].items() if k not in CHECK_FILLS}
        return {k: None for k in captured[kind]["outputs"]} | inputs | values

    for i in range(count // 2):
        cache = SameValuesCache(f"cache-{i}", registered("cache", name=f"cache-{i}"))
        group = registered("group", name=f"group-{i}", cache_id=cache.id)
        SameValuesGroup(f"group-{i}", group)
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
