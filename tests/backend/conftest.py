from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest

from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.registry.client import Limits, RegistryClient
from eci_imagecache.retry import RetryPolicy


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 6, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


# Retries without waiting and short timeouts keep fault tests fast.
FAST_RETRY = RetryPolicy.immediate(attempts=3)
SHORT_LIMITS = Limits(connect_timeout=3.0, read_timeout=3.0)
FastRegistry = partial(RegistryClient, retry=FAST_RETRY, limits=SHORT_LIMITS)


@pytest.fixture
def make_backend(tmp_path: Path, clock: Clock) -> Callable[..., LocalBackend]:
    def make(**kwargs: object) -> LocalBackend:
        kwargs.setdefault("data_dir", tmp_path / "data")
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("registry_factory", FastRegistry)
        return LocalBackend(**kwargs)

    return make


@pytest.fixture
def backend(make_backend: Callable[..., LocalBackend]) -> LocalBackend:
    return make_backend()
