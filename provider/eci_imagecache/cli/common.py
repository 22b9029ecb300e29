"""What every command shares: the global options, the consoles, the backend opened for writing
or for reading, JSON output, and errors told as one line with a documented exit code.

``main`` (the root command), ``groups`` and ``review`` import this module; it imports none of
them, so imports in ``cli/`` point one way."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from pydantic_core import to_json
from rich.console import Console

from ..backends.base import Backend, BackendError, BackendReader, NotFound
from ..backends.factory import make_backend, make_reader
from ..engine.models import failure_text, validation_failures
from ..engine.refs import ImageRefError

EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND = 1, 2, 3
HIGHLIGHT_MAX_LINES = 10_000  # JSON on a terminal is highlighted up to this (~300 caches)

# Piped output is not cut to 80 columns: tables stay whole in logs and CI.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


class Options(BaseModel):
    """The options of the whole command (``--backend``, ``--json``, ...)."""

    backend: str = "local"
    region: str | None = None
    endpoint: str | None = None
    data_dir: Path | None = None
    json_output: bool = False


options = Options()
"""The options given; set once, by the root command's callback, before any command runs."""


def set_options(given: Options) -> None:
    """Take the options given (in place: every module holding ``options`` sees them)."""
    for name in Options.model_fields:
        setattr(options, name, getattr(given, name))


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    err.print(f"error: {message}", highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(code)


P = ParamSpec("P")
R = TypeVar("R")


def command(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn our errors into one line on stderr and a documented exit code."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except NotFound as e:
            fail(str(e), EXIT_NOT_FOUND)
        except (BackendError, ImageRefError) as e:
            fail(str(e))
        except ValidationError as e:
            fail(failure_text(validation_failures(e)), EXIT_USAGE)

    return wrapper


def backend() -> Backend:
    """The backend, opened to write (the local one recovers as it opens)."""
    return make_backend(options.backend, options.region, options.endpoint, options.data_dir)


def reader() -> BackendReader:
    """The backend, opened to read only: the local one through its read-only view, which
    recovers, expires and writes nothing (commands that only look use this)."""
    return make_reader(options.backend, options.region, options.endpoint, options.data_dir)


def emit_json(value: Any, plain: bool = False) -> None:
    """``value`` as indented JSON. ``plain``: it holds only strings, integers, booleans, None,
    lists and dicts with string keys (models dumped in JSON mode, without floats), so pydantic's
    encoder writes it, byte for byte as the standard library's would, many times faster."""
    text = plain_json(value) if plain else json.dumps(value, default=str, indent=2)
    if out.is_terminal and text.count("\n") < HIGHLIGHT_MAX_LINES:
        out.print_json(text)  # highlighted for people
    else:
        # For programs, and screens more than anyone reads, as is: highlighting costs about
        # 0.1 ms a line (10,000 caches took most of a minute).
        sys.stdout.write(text + "\n")


# What json.dumps escapes beyond ASCII's control characters (which both encoders escape alike).
_NOT_ASCII = re.compile(r"[^\x00-\x7e]")


def _json_escape(found: re.Match[str]) -> str:
    code = ord(found.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # a UTF-16 surrogate pair, as json.dumps writes it
    return f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}"


def plain_json(value: Any) -> str:
    """``json.dumps(value, indent=2)`` of a plain value (see :func:`emit_json`), written by
    pydantic's encoder: the standard library's indenting encoder is pure Python, about 4 s for
    10,000 caches."""
    text = to_json(value, indent=2).decode()
    return text if text.isascii() and "\x7f" not in text else _NOT_ASCII.sub(_json_escape, text)
