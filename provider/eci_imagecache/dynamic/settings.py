"""Where a resource lives: backend, region and local data directory.

They travel as ordinary resource inputs (read from the ``eci`` stack config namespace in the
program), so providers stay stateless and a change of backend or region shows as a replacement.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pulumi

from ..backends.base import Backend, BackendError

CONFIG_NAMESPACE = "eci"
_backends: dict[tuple[str, str, str], Backend] = {}
_lock = threading.Lock()


def placement_inputs(backend: str | None, region: str | None) -> dict[str, Any]:
    """Inputs every resource carries, filled from stack config when not given."""
    config = pulumi.Config(CONFIG_NAMESPACE)
    backend = backend or config.get("backend") or "local"
    return {
        "backend": backend,
        "region": region or config.get("region") or ("local" if backend == "local" else None),
        "data_dir": config.get("dataDir"),
    }


def open_backend(props: dict[str, Any]) -> Backend:
    """The backend named by a resource's inputs, one instance per process and placement."""
    kind = props.get("backend") or "local"
    key = (kind, str(props.get("region") or ""), str(props.get("data_dir") or ""))
    with _lock:
        backend = _backends.get(key)
        if backend is None:
            if kind != "local":
                raise BackendError(f"backend: unknown backend {kind!r} (use 'local')")
            from ..backends.local.backend import LocalBackend

            data_dir = Path(props["data_dir"]) if props.get("data_dir") else None
            backend = LocalBackend(data_dir=data_dir, region=key[1] or "local")
            _backends[key] = backend
        return backend
