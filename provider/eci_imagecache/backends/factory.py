"""Open a backend by name: the one place that knows which backend classes exist and how their
credentials are made. Providers and the CLI hold what these functions return as the
``Backend`` / ``BackendReader`` protocols, never as a class of ours.

The classes are imported when a backend is opened, not with this module: the alicloud SDK and
the local runtime are only loaded where they are used."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from .base import Backend, BackendError, BackendReader

if TYPE_CHECKING:
    from .emulator.server import EmulatorServer

BACKENDS = ("local", "alicloud")


def default_data_dir() -> Path:
    """Where the local backend keeps its data unless told otherwise (``$ECI_IMAGECACHE_HOME``,
    else the user's data directory)."""
    from .local.context import default_data_dir as local_default

    return local_default()


def make_backend(
    kind: str = "local",
    region: str | None = None,
    endpoint: str | None = None,
    data_dir: str | Path | None = None,
    timeout_seconds: float | None = None,
    *,
    access_key_id: str | None = None,
    access_key_secret: SecretStr | None = None,
) -> Backend:
    """The backend ``kind`` names, opened to write (the local one recovers as it opens).

    ``access_key_id`` / ``access_key_secret``: the alicloud backend's access key; without
    both, the standard Alibaba Cloud credential chain of this process (environment variables,
    the CLI profile, instance roles)."""
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
            credential=_access_key_credential(access_key_id, access_key_secret),
            timeout=float(timeout_seconds) if timeout_seconds else None,
        )
    raise BackendError(
        f"backend: unknown backend {kind!r}: use " + " or ".join(map(repr, BACKENDS))
    )


def make_reader(
    kind: str = "local",
    region: str | None = None,
    endpoint: str | None = None,
    data_dir: str | Path | None = None,
) -> BackendReader:
    """The backend ``kind`` names, opened to read only: the local one through its read-only
    view, which recovers, expires and writes nothing; another as it is (reads change nothing
    there)."""
    if kind == "local":
        from .local.view import LocalView

        return LocalView(Path(data_dir) if data_dir else None, region or "local")
    return make_backend(kind, region, endpoint, data_dir)


def make_emulator_server(
    access_keys: dict[str, str],
    *,
    data_dir: str | Path | None = None,
    region: str,
    host: str = "127.0.0.1",
    port: int = 0,
) -> EmulatorServer:
    """The ECI OpenAPI emulator serving a local backend (in ``data_dir``) for ``region``;
    requests must be signed with one of ``access_keys`` (id: secret)."""
    from .emulator.server import EmulatorServer
    from .local.backend import LocalBackend

    local = LocalBackend(data_dir=Path(data_dir) if data_dir else None, region=region)
    return EmulatorServer(local, access_keys, host=host, port=port)


def _access_key_credential(key_id: str | None, secret: SecretStr | None) -> Any:
    """The SDK's credential client (untyped) for an access key pair; ``None`` (the credential
    chain) without both halves."""
    if not (key_id and secret):
        return None
    from alibabacloud_credentials.client import Client
    from alibabacloud_credentials.models import Config

    config = Config(
        type="access_key", access_key_id=key_id, access_key_secret=secret.get_secret_value()
    )
    return Client(config)
