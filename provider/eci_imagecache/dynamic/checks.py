"""What the providers' hooks share: a registry's answers, as the registry client or a backend
reports them, and validation whose failures name the property, as ``check`` must."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from pulumi.dynamic import CheckFailure
from pydantic import BaseModel, ValidationError

from ..backends import base
from ..engine.models import validation_failures
from ..engine.refs import ImageRefError
from ..registry import client

NOT_FOUND = (client.ImageNotFound, base.ImageNotFound)
REFUSED = (client.AuthenticationError, base.RegistryAuthError)
UNAVAILABLE = (client.RegistryUnavailable, base.RegistryUnavailable)

M = TypeVar("M", bound=BaseModel)


def validate(build: Callable[[], M]) -> tuple[M | None, list[CheckFailure]]:
    """Run a model constructor; failures name the property, as ``check`` must."""
    try:
        return build(), []
    except ValidationError as err:
        return None, [CheckFailure(prop, reason) for prop, reason in validation_failures(err)]
    except ImageRefError as err:
        return None, [CheckFailure("images", str(err))]
