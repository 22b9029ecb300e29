"""One retry policy for every remote call (registries, the cloud API), on ``stamina``.

Exponential backoff with jitter, a bound on attempts and on the total time, and the server's
``Retry-After`` honoured (capped at the longest wait). Callers say what is worth another try
with a hook: ``True`` retries after the policy's backoff, a number retries after that many
seconds, ``False`` gives up at once. Tests run the same code with ``RetryPolicy.immediate``.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC
from typing import TypeVar

import stamina
import stamina.instrumentation

T = TypeVar("T")

# stamina logs each scheduled retry to stderr by default: our commands print one line per
# error, and what is retried is said by the error that ends the retries.
stamina.instrumentation.set_on_retry_hooks([])
RetryHook = Callable[[Exception], bool | float]


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # in all, the first one included
    timeout: float = 300.0  # seconds for all attempts together
    wait_initial: float = 0.25
    wait_max: float = 30.0
    wait_jitter: float = 0.5

    @classmethod
    def immediate(cls, attempts: int = 3) -> RetryPolicy:
        """The same retries without waiting (tests)."""
        return cls(attempts=attempts, wait_initial=0.0, wait_max=0.0, wait_jitter=0.0)

    def within(self, seconds: float) -> RetryPolicy:
        """This policy bounded by a deadline ``seconds`` from now."""
        return replace(self, timeout=max(0.0, min(self.timeout, seconds)))

    def attempts_of(self, on: RetryHook) -> Iterator[stamina.Attempt]:
        """``for attempt in policy.attempts_of(hook): with attempt: ...``"""
        capped = self._capped(on)
        return iter(
            stamina.retry_context(
                on=capped,
                attempts=self.attempts,
                timeout=self.timeout,
                wait_initial=self.wait_initial,
                wait_max=self.wait_max,
                wait_jitter=self.wait_jitter,
            )
        )

    def call(self, on: RetryHook, fn: Callable[[], T]) -> T:
        for attempt in self.attempts_of(on):
            with attempt:
                return fn()
        raise AssertionError("unreachable: the last attempt raises")

    def _capped(self, on: RetryHook) -> Callable[[Exception], bool | float]:
        def hook(exc: Exception) -> bool | float:
            answer = on(exc)
            if isinstance(answer, bool):
                return answer
            return max(0.0, min(float(answer), self.wait_max))

        return hook


class Retryable(Exception):
    """An answer worth another try (throttling, 5xx); ``retry_after`` if the server named one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def retry_after_seconds(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """``Retry-After`` as seconds: a number of seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())


def default_hook(exc: Exception) -> bool | float:
    """Retry what :class:`Retryable` marks, after the server's delay when it gave one."""
    if isinstance(exc, Retryable):
        return exc.retry_after if exc.retry_after is not None else True
    return False
