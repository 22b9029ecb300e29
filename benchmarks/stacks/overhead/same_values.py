"""The like-for-like baseline of the overhead benchmark: resources that carry exactly the inputs
and outputs ours do (the values, captured from a deployment of ours, come from the file
``$ECI_BENCH_SAME_VALUES``) with none of our hooks.

``check`` returns the inputs as they come (the program registers what ours stored after its
check); ``create`` does the same work as ours, straight through the local backend's API (the
cache's build; the group's start from its cache), and returns the outputs ours returned, with
this resource's id. No validation, no planning, no matching, no idempotency token, no output
conversion: what is left between this and ours is our hooks' cost.

Named by reference (``ProviderRef``), as ours are, so that every resource carries a provider
string of the same size; the stack's ``PYTHONPATH`` has this directory."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from pulumi.dynamic import CheckResult, CreateResult, ResourceProvider

from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.engine.models import ContainerGroupSpec, ImageCacheSpec

_lock = threading.Lock()
_backend: LocalBackend | None = None


def backend() -> LocalBackend:
    """One backend per provider process (as ours keeps one), in the stack's data dir."""
    global _backend
    with _lock:
        if _backend is None:
            _backend = LocalBackend()
        return _backend


def values(kind: str) -> dict[str, Any]:
    """The inputs and outputs ours had for a resource of ``kind`` ("cache" or "group")."""
    return json.loads(Path(os.environ["ECI_BENCH_SAME_VALUES"]).read_text())[kind]


class _SameValues(ResourceProvider):
    serialize_as_secret_always = False
    kind = ""

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(news, [])

    def outputs(self, id_: str) -> dict[str, Any]:
        return {**values(self.kind)["outputs"], f"{self.kind}_id": id_}


class CacheProvider(_SameValues):
    kind = "cache"

    def create(self, props: dict[str, Any]) -> CreateResult:
        spec = ImageCacheSpec(name=props["name"], images=props["images"], layer_reuse=True)
        record = backend().create_image_cache(spec)
        return CreateResult(id_=record.id, outs=self.outputs(record.id))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        backend().delete_image_cache(id_)


class GroupProvider(_SameValues):
    kind = "group"

    def create(self, props: dict[str, Any]) -> CreateResult:
        image = props["containers"][0]["image"]
        spec = ContainerGroupSpec(
            name=props["name"],
            cache="explicit",
            cache_id=props["cache_id"],
            restart_policy="Never",
            containers=[{"name": "app", "image": image}],
        )
        record = backend().create_container_group(spec)
        return CreateResult(id_=record.id, outs=self.outputs(record.id))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        backend().delete_container_group(id_)
