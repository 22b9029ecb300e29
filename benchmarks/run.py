"""Run every benchmark in one go: ``python -m benchmarks.run`` (``BENCH_QUICK=1`` for CI)."""

from __future__ import annotations

import importlib

BENCHMARKS = ["benchmarks.bench_matcher", "benchmarks.bench_local"]


def main() -> None:
    for name in BENCHMARKS:
        print(f"== {name}")
        importlib.import_module(name).main()


if __name__ == "__main__":
    main()
