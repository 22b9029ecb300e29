"""The like-for-like baseline of the overhead benchmark: resources that carry exactly the inputs
and outputs ours do (the values, captured from a deployment of ours, come from the file
``$ECI_BENCH_SAME_VALUES``) with none of our hooks.

The program registers ours' stored inputs, but for the values ours' check computes
(``CHECK_FILLS``), which it registers as None as ours' program does; ``check`` fills those in
from the captured inputs; ``create`` does the same work as ours, straight through the local
backend's API (the cache's build; the group's start from its cache), and returns the outputs
ours returned, with this resource's id. No validation, no planning, no matching, no
idempotency token, no output conversion: what is left between this and ours is our hooks'
cost.

Named by reference (``ProviderRef``), as ours are, so that every resource carries a provider
string of the same size; the stack's ``PYTHONPATH`` has this directory."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from pulumi.dynamic import CheckResult, CreateResult, ResourceProvider

# The backend and the engine's models are imported by the provider process only, when it first
# creates (as ours are): the program imports this module for CHECK_FILLS.

# Inputs ours' check computes (the program registers them as None, being declared outputs).
CHECK_FILLS = ("location", "generation", "build_plan", "change", "cost", "match_preview")

_lock = threading.Lock()
_backend: Any = None
_values: dict[str, Any] | None = None


def backend() -> Any:
    """One backend per provider process (as ours keeps one), in the stack's data dir."""
    global _backend
    with _lock:
        if _backend is None:
            from eci_imagecache.backends.local.backend import LocalBackend

            _backend = LocalBackend()
        return _backend


def values(kind: str) -> dict[str, Any]:
    """The inputs and outputs ours had for a resource of ``kind`` ("cache" or "group")."""
    global _values
    with _lock:
        if _values is None:
            _values = json.loads(Path(os.environ["ECI_BENCH_SAME_VALUES"]).read_text())
        return _values[kind]


class _SameValues(ResourceProvider):
    serialize_as_secret_always = False
    kind = ""

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        captured = values(self.kind)["inputs"]
        return CheckResult(news | {k: captured[k] for k in CHECK_FILLS if k in captured}, [])

    def outputs(self, id_: str) -> dict[str, Any]:
        return {**values(self.kind)["outputs"], f"{self.kind}_id": id_}


class CacheProvider(_SameValues):
    kind = "cache"

    def create(self, props: dict[str, Any]) -> CreateResult:
        from eci_imagecache.engine.models import ImageCacheSpec

        spec = ImageCacheSpec(name=props["name"], images=props["images"], layer_reuse=True)
        record = backend().create_image_cache(spec)
        return CreateResult(id_=record.id, outs=self.outputs(record.id))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        backend().delete_image_cache(id_)


class GroupProvider(_SameValues):
    kind = "group"

    def create(self, props: dict[str, Any]) -> CreateResult:
        from eci_imagecache.engine.models import ContainerGroupSpec

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
