"""Where a resource lives: backend, region and local data directory.

They travel as ordinary resource inputs, read from the ``eci`` stack config namespace by the
program, so providers stay stateless (nothing captured in the pickled provider) and a change of
backend or region shows as a replacement. Cloud credentials never travel: the alicloud backend
reads them from the environment of the provider process.
"""

from __future__ import annotations

import threading
from typing import Any

import pulumi

from ..backends.factory import BACKENDS, make_backend

CONFIG_NAMESPACE = "eci"
PLACEMENT_FIELDS = ("backend", "region", "endpoint", "data_dir", "timeout_seconds")
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
        # How long create/update wait for the cloud (alicloud); the work goes on after it.
        "timeout_seconds": config.get_int("operationTimeout"),
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
    return make_backend(
        props.get("backend") or "local",
        props.get("region"),
        props.get("endpoint"),
        props.get("data_dir"),
        props.get("timeout_seconds"),
    )
