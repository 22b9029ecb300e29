"""The provider process ends with the Pulumi CLI that started it.

The CLI starts the dynamic provider (through a shell wrapper) and stops it when a deployment
ends. A CLI killed with SIGKILL (the OOM killer, a runner killing only the CLI) cannot, and the
provider would stay behind for good, with the group supervisor it keeps ready. So the provider
watches the CLI: once the CLI is gone and no hook is running, the process ends. A hook under way
finishes first (a build completes, and the next deployment adopts it by its create token).

Only the provider processes watch (``python -m pulumi.dynamic``, and the plugin
``pulumi-resource-eci-imagecache``): the program and tests that import the providers do not."""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C", bound=type)

HOOKS = ("check", "diff", "create", "read", "update", "delete")
CLI_NAME = "pulumi"  # the CLI's process name (/proc/<pid>/comm)

_lock = threading.Lock()
_running = 0
_watching = False


def _counted(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def hook(*args: Any, **kwargs: Any) -> Any:
        global _running
        with _lock:
            _running += 1
        try:
            return method(*args, **kwargs)
        finally:
            with _lock:
                _running -= 1

    return hook


def counted_hooks(provider_class: C) -> C:
    """Count the provider's hooks while they run (the process does not end under one)."""
    for name in HOOKS:
        if name in vars(provider_class):
            setattr(provider_class, name, _counted(vars(provider_class)[name]))
    return provider_class


def running_hooks() -> int:
    with _lock:
        return _running


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of ``pid``, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return int(fields[1]), fields[19]


def find_cli(levels: int = 4) -> tuple[int, str] | None:
    """The nearest ancestor named ``pulumi`` (pid, start time), None when there is none."""
    pid = os.getppid()
    for _ in range(levels):
        if pid <= 1:
            return None
        stat = _stat(pid)
        if stat is None:
            return None
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            return None
        if name == CLI_NAME:
            return pid, stat[1]
        pid = stat[0]
    return None


def watch_cli(interval: float = 1.0) -> None:
    """In the provider process, once: end it when the CLI is gone and no hook is running."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is None or spec.name != "pulumi.dynamic.__main__":
        return
    end_with_cli(interval)


def end_with_cli(interval: float = 1.0) -> None:
    """Once per process: end it when the CLI that started it is gone and no hook is running
    (the dynamic providers' process, through ``watch_cli``; the plugin's, from its main)."""
    global _watching
    with _lock:
        if _watching:
            return
        _watching = True
    cli = find_cli()
    if cli is None:
        return
    threading.Thread(target=_watch, args=(cli, interval), name="cli-watch", daemon=True).start()


def _watch(cli: tuple[int, str], interval: float) -> None:
    pid, started = cli
    while True:
        time.sleep(interval)
        stat = _stat(pid)
        if stat is None or stat[1] != started:  # gone (or its pid taken by another process)
            break
    while True:
        with _lock:
            if _running == 0:
                os._exit(0)  # nothing to answer: the CLI is gone
        time.sleep(interval)
