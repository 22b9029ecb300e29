"""The base class of both providers (``ImageCache``, ``ContainerGroup``) and of the plugin's
hooks: settings from ``configure``, the backend a resource names, and backend failures told as
the hook's error."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from pulumi.dynamic import ConfigureRequest, ResourceProvider

from ..backends.base import Backend, BackendError
from .common import Props
from .lifetime import counted_hooks, watch_cli
from .sdk_server_patch import UserError
from .settings import ProviderSettings, SettingsSource


class ConfiguredProvider(ResourceProvider):
    """What both providers share: their settings (the stack's, from ``configure``, or those a
    resource names) and the provider process's lifetime (hooks counted, the CLI watched: see
    ``lifetime``)."""

    serialize_as_secret_always = False
    _source: SettingsSource | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        counted_hooks(cls)

    def configure(self, req: ConfigureRequest) -> None:
        self._source = SettingsSource(req.config)
        watch_cli()

    def settings_for(self, props: Props | None) -> ProviderSettings:
        """The settings for a resource: the stack's, or its own backend and region."""
        if self._source is None:  # configure was not called (e.g. under test): the defaults
            self._source = SettingsSource({})
        return self._source.for_resource(props)

    def backend_of(self, props: Props, recorded: Props | None = None) -> Backend:
        """The backend ``props`` name, refusing a resource ``recorded`` (by default: ``props``
        themselves, the state) in another location than that backend's."""
        settings = self.settings_for(props)
        settings.require_location((props if recorded is None else recorded).get("location"))
        return settings.open()


@contextlib.contextmanager
def backend_errors() -> Iterator[None]:
    """A backend's failure, told as the hook's error (a message, not a traceback)."""
    try:
        yield
    except BackendError as err:
        raise UserError(str(err)) from err
