"""Shared helpers: timing side by side and writing results/<name>.json."""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def quick() -> bool:
    """Short mode (small sizes) for CI: BENCH_QUICK=1."""
    return os.environ.get("BENCH_QUICK", "") not in ("", "0")


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    """Seconds for each of ``repeat`` calls."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def cpu_timed(fn: Callable[[], object], repeat: int) -> list[float]:
    """CPU seconds of this thread for each of ``repeat`` calls: time spent waiting for a core
    on a busy machine is left out, so the figure says what the code costs."""
    samples = []
    for _ in range(repeat):
        start = time.thread_time()
        fn()
        samples.append(time.thread_time() - start)
    return samples


def p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def shown(value: object) -> str:
    """A figure as the tables show it: numbers with thousands separators, text as it is
    (versions, and why an anchor was skipped)."""
    return f"{value:,}" if isinstance(value, int | float) else str(value)


def write_results(name: str, figures: dict[str, float | str]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    return path


def report(name: str, title: str, figures: dict[str, float | str]) -> None:
    """Print the figures as a table and write them to results/<name>.json."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, shown(value))
    Console().print(table)
    print(f"wrote {write_results(name, figures)}")


def without_unpacking(backend: Any) -> Any:
    """``backend`` (a LocalBackend) with its builds' unpack step taken out: fetch and verify
    only, what the reference clients (curl, skopeo, crane) do too."""
    from eci_imagecache.backends.local.build import Unpacking

    pipeline = backend.build

    def fetch_only(
        images: Any, blobs: Any, owners: Any, client: Any, progress: Any, budget: Any = None
    ) -> Unpacking:
        pipeline.fetch(blobs, owners, client, progress)
        return Unpacking(pipeline.ctx, set())

    pipeline.fetch_and_unpack = fetch_only
    return backend
