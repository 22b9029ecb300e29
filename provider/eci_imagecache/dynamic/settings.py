"""Where a resource lives: backend, region and local data directory.

They travel as ordinary resource inputs, read from the ``eci`` stack config namespace by the
program, so providers stay stateless (nothing captured in the pickled provider) and a change of
backend or region shows as a replacement. Cloud credentials never travel: the alicloud backend
reads them from the environment of the provider process.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pulumi

from ..backends.base import BackendError

CONFIG_NAMESPACE = "eci"
PLACEMENT_FIELDS = ("backend", "region", "endpoint", "data_dir")
BACKENDS = ("local", "alicloud")
_backends: dict[tuple, Any] = {}
_lock = threading.Lock()


def placement_inputs(backend: str | None = None, region: str | None = None) -> dict[str, Any]:
    """Inputs every resource carries, filled from stack config when not given."""
    config = pulumi.Config(CONFIG_NAMESPACE)
    backend = backend or config.get("backend") or "local"
    return {
        "backend": backend,
        "region": region or config.get("region") or ("local" if backend == "local" else None),
        "endpoint": config.get("endpoint"),
        "data_dir": config.get("dataDir"),
    }


def check_placement(props: dict[str, Any]) -> list[tuple[str, str]]:
    failures = []
    if props.get("backend") not in BACKENDS:
        failures.append(
            (
                "backend",
                f"unknown backend {props.get('backend')!r}: use "
                + " or ".join(repr(b) for b in BACKENDS),
            )
        )
    elif props.get("backend") == "alicloud" and not props.get("region"):
        failures.append(("region", "the alicloud backend needs a region (eci:region)"))
    return failures


def open_backend(props: dict[str, Any]) -> Any:
    """The backend named by a resource's inputs: one instance per process and placement."""
    key = tuple(str(props.get(k) or "") for k in PLACEMENT_FIELDS)
    with _lock:
        backend = _backends.get(key)
        if backend is None:
            backend = _make(props)
            _backends[key] = backend
        return backend


def _make(props: dict[str, Any]) -> Any:
    kind = props.get("backend") or "local"
    if kind == "local":
        from ..backends.local.backend import LocalBackend

        data_dir = Path(props["data_dir"]) if props.get("data_dir") else None
        return LocalBackend(data_dir=data_dir, region=props.get("region") or "local")
    if kind == "alicloud":
        from ..backends.alicloud import AliCloudBackend

        return AliCloudBackend(region=props["region"], endpoint=props.get("endpoint"))
    raise BackendError(f"backend: unknown backend {kind!r}")
