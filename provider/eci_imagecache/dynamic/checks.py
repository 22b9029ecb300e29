"""What the providers' hooks share: validation whose failures name the property, as ``check``
must, and the failures a registry's refusal makes (as a backend reports it)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from pulumi.dynamic import CheckFailure
from pydantic import BaseModel, ValidationError

from ..backends.base import BackendError, BackendRegistryAuthError, InvalidSpec
from ..engine.errors import InvalidProperty
from ..engine.models import RegistryCredential, invalid_properties
from ..engine.refs import ImageRefError

M = TypeVar("M", bound=BaseModel)


class PropertyFailure(CheckFailure):
    """A check failure from the engine's :class:`InvalidProperty`: besides what Pulumi shows
    (``property``, ``reason``), where within the property (``place``, None when the property
    itself) and what is wrong there (``message``), so that the plugin can name the place as
    its users write it."""

    def __init__(self, problem: InvalidProperty) -> None:
        super().__init__(problem.property, problem.reason)
        self.place = problem.place
        self.message = problem.message


def validate(build: Callable[[], M]) -> tuple[M | None, list[CheckFailure]]:
    """Run a model constructor; failures name the property, as ``check`` must."""
    try:
        return build(), []
    except ValidationError as err:
        return None, [PropertyFailure(problem) for problem in invalid_properties(err)]
    except ImageRefError as err:
        return None, [CheckFailure("images", str(err))]


def backend_failure(err: BackendError | ValueError, otherwise: str) -> CheckFailure:
    """A backend's refusal as a check failure: against the property it names, else against
    ``otherwise``."""
    if isinstance(err, InvalidSpec) and err.problem is not None:
        return PropertyFailure(err.problem)
    if isinstance(err, InvalidProperty):  # the engine's own, should a backend let one through
        return PropertyFailure(err)
    return CheckFailure(otherwise, str(err))


def credentials_failure(
    err: BackendRegistryAuthError,
    registries: Iterable[str],
    credentials: Iterable[RegistryCredential],
) -> CheckFailure:
    """A registry refused the images: the failure names the registries among ``registries``
    that no credentials are given for, else asks to check the ones given."""
    missing = sorted(set(registries) - {c.server for c in credentials})
    hint = (
        f"; no credentials are given for {', '.join(missing)}"
        if missing
        else "; check the username and password"
    )
    return CheckFailure("credentials", f"{err}{hint}")
