"""Open a backend by name: the one place that knows which classes exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import Backend, BackendError

BACKENDS = ("local", "alicloud")


def make_backend(
    kind: str = "local",
    region: str | None = None,
    endpoint: str | None = None,
    data_dir: str | Path | None = None,
    timeout_seconds: float | None = None,
    credential: Any = None,
) -> Backend:
    if kind == "local":
        from .local.backend import LocalBackend

        return LocalBackend(data_dir=Path(data_dir) if data_dir else None, region=region or "local")
    if kind == "alicloud":
        if not region:
            raise BackendError("region: the alicloud backend needs a region")
        from .alicloud import AliCloudBackend

        return AliCloudBackend(
            region=region,
            endpoint=endpoint,
            credential=credential,
            **({"timeout": float(timeout_seconds)} if timeout_seconds else {}),
        )
    raise BackendError(
        f"backend: unknown backend {kind!r}: use " + " or ".join(map(repr, BACKENDS))
    )
