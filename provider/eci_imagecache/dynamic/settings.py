"""Where the resources live and how long the provider waits: the provider's settings.

They come from the stack configuration (namespace ``eci``) through the provider's ``configure``
hook, never from resource inputs: a timeout is not part of what a cache is, and changing it must
not touch any resource. The location (backend, region, data directory or endpoint) is recorded in
every resource's state when it is created; a hook that finds the provider configured for another
location refuses and names both, so a CI job that lacks a setting can neither plan deletions nor
drop resources from the state.

Cloud credentials come from ``eci:accessKeyId`` / ``eci:accessKeySecret`` (a secret) when set,
otherwise from the standard Alibaba Cloud credential chain of the provider process. They are
never resource inputs and never in state.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, SecretStr

from ..backends.base import Backend, BackendError
from ..backends.factory import BACKENDS, default_data_dir, make_backend
from .common import CONFIG_NAMESPACE
from .sdk_server_patch import UserError

DEFAULT_TIMEOUT_SECONDS = 1800.0


class ConfigSource(Protocol):
    def get(self, key: str) -> Any: ...


class SettingsError(UserError):
    """The stack configuration names no usable backend."""


class LocationChanged(UserError):
    """The provider is configured for another backend than the one a resource lives in."""


class SettingsSource:
    """What a provider keeps from ``configure``: the stack configuration, and the settings it
    gives for each backend and region a resource names."""

    def __init__(self, config: ConfigSource) -> None:
        self.config = config
        self._settings: dict[tuple[str | None, str | None], ProviderSettings] = {}

    def for_resource(self, props: dict[str, Any] | None) -> ProviderSettings:
        props = props or {}
        backend, region = props.get("backend"), props.get("region")
        key = (
            backend if isinstance(backend, str) else None,
            region if isinstance(region, str) else None,
        )
        if key not in self._settings:
            self._settings[key] = settings_from_config(self.config, *key)
        return self._settings[key]


class ProviderSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    backend: str = "local"
    region: str = "local"
    endpoint: str | None = None
    data_dir: Path | None = None
    operation_timeout: float = DEFAULT_TIMEOUT_SECONDS
    access_key_id: str | None = None
    access_key_secret: SecretStr | None = None
    # A configuration problem, reported by ``check`` (naming the key) and raised by other hooks.
    problem: str | None = None

    @property
    def location(self) -> str:
        """What identifies the backend a resource lives in; recorded in its state."""
        if self.backend == "local":
            region = "" if self.region == "local" else f" ({self.region})"
            return f"local backend{region} at {self.data_dir}"
        endpoint = self.endpoint or f"https://eci.{self.region}.aliyuncs.com"
        return f"alicloud backend in {self.region} at {endpoint}"

    def require_ok(self) -> None:
        if self.problem:
            raise SettingsError(self.problem)

    def require_location(self, recorded: str | None) -> None:
        """Refuse to act on a resource recorded in another location than the configured one."""
        if recorded and recorded != self.location:
            raise LocationChanged(location_changed(recorded, self.location))

    def open(self) -> Backend:
        """The backend these settings name: one instance per process and settings."""
        self.require_ok()
        with _lock:
            backend = _backends.get(self)
            if backend is None:
                try:
                    backend = make_backend(
                        self.backend,
                        self.region,
                        self.endpoint,
                        self.data_dir,
                        self.operation_timeout,
                        access_key_id=self.access_key_id,
                        access_key_secret=self.access_key_secret,
                    )
                except BackendError:
                    raise
                except Exception as err:  # e.g. no cloud credentials in the chain
                    raise BackendError(f"cannot open the {self.location}: {err}") from None
                _backends[self] = backend
            return backend


_backends: dict[ProviderSettings, Backend] = {}
_lock = threading.Lock()


def location_changed(recorded: str, configured: str) -> str:
    return (
        f"this resource lives in the {recorded}, but the provider is configured for the "
        f"{configured}. Nothing was changed. Set the stack configuration (eci:backend, "
        "eci:region, eci:dataDir or eci:endpoint) or $ECI_IMAGECACHE_HOME back to the recorded "
        "location; to move the stack, destroy it there and deploy it again here"
    )


def settings_failures(settings: ProviderSettings, olds: dict[str, Any] | None) -> list[Any]:
    """What ``check`` reports before anything else: a configuration problem, or a resource
    recorded in another location than the configured one."""
    from pulumi.dynamic import CheckFailure

    if settings.problem:
        return [CheckFailure("", settings.problem)]
    recorded = (olds or {}).get("location")
    if recorded and recorded != settings.location:
        return [CheckFailure("", location_changed(recorded, settings.location))]
    return []


def _text(source: ConfigSource, key: str) -> str | None:
    value = source.get(f"{CONFIG_NAMESPACE}:{key}")
    if value is None or value == "":
        return None
    return str(value)


def settings_from_config(
    source: ConfigSource, backend: str | None = None, region: str | None = None
) -> ProviderSettings:
    """Settings from the stack configuration; never raises (problems are reported by hooks).
    ``backend`` and ``region`` are a resource's own choice, over ``eci:backend``/``eci:region``."""
    configured = _text(source, "backend") or "local"
    backend = backend or configured
    region = region or (_text(source, "region") if backend == configured else None)
    problem = None
    if backend not in BACKENDS:
        problem = f"eci:backend: unknown backend {backend!r}: use " + " or ".join(
            repr(b) for b in BACKENDS
        )
        backend = "local"
    elif backend == "alicloud" and not region:
        problem = "eci:region: the alicloud backend needs a region (e.g. cn-hangzhou)"
    timeout = DEFAULT_TIMEOUT_SECONDS
    raw_timeout = _text(source, "operationTimeout")
    if raw_timeout is not None:
        try:
            timeout = float(raw_timeout)
            if timeout <= 0:
                raise ValueError
        except ValueError:
            problem = f"eci:operationTimeout: expected a number of seconds, got {raw_timeout!r}"
            timeout = DEFAULT_TIMEOUT_SECONDS
    data_dir = None
    if backend == "local":
        given = _text(source, "dataDir")
        data_dir = (Path(given).expanduser() if given else default_data_dir()).resolve()
    secret = _text(source, "accessKeySecret")
    return ProviderSettings(
        backend=backend,
        region=region or ("local" if backend == "local" else ""),
        endpoint=_text(source, "endpoint") if backend == "alicloud" else None,
        data_dir=data_dir,
        operation_timeout=timeout,
        access_key_id=_text(source, "accessKeyId"),
        access_key_secret=SecretStr(secret) if secret else None,
        problem=problem,
    )
