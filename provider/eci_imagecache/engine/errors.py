"""The engine's errors: a domain rule refuses what was asked.

Each layer has its own family, named apart so that a caller catches one per layer: the engine's
(:class:`EngineError`), the registry client's (``registry.client.RegistryError``), the backends'
(``backends.base.BackendError``) and the emulator's wire errors (``backends.emulator.errors``).

An input that breaks a rule of one property is an :class:`InvalidProperty`, which carries the
property and the place within it as fields: ``check`` reports them without reading them back
out of the message.
"""

from __future__ import annotations

import re


class EngineError(Exception):
    """A domain rule refuses the request; the message is safe to show (it holds no secret)."""


_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"


def path_of(location: tuple[int | str, ...]) -> str:
    """``("containers", 0, "ports", 1)`` -> ``containers[0].ports[1]``; a key that is not a
    name is quoted: ``env['A B']``."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not re.fullmatch(_IDENTIFIER, str(part)):
            path += f"[{str(part)!r}]"
        else:
            path += f".{part}" if path else str(part)
    return path


class InvalidProperty(EngineError, ValueError):
    """Input that breaks a rule of one property.

    ``path`` is where within the inputs (``containers[1].name``), ``property`` the top-level
    input it is in (``containers``; by default the path's first name) and ``message`` what is
    wrong there. ``reason`` is what ``check`` reports against ``property``: the message, led
    by the ``place`` within the property when there is one. ``str()`` is ``path: message``.
    """

    def __init__(self, path: str, message: str, *, property: str | None = None) -> None:
        self.path = path
        self.property = property or re.split(r"[.\[]", path, maxsplit=1)[0] or "(resource)"
        self.message = message
        super().__init__(f"{path or self.property}: {message}")

    @property
    def place(self) -> str | None:
        """The path when it goes deeper than the property (``containers[1].name``), else None."""
        return None if self.path in ("", path_of((self.property,))) else self.path

    @property
    def reason(self) -> str:
        return f"{self.place}: {self.message}" if self.place else self.message
