"""Matching latency against 1,000 / 10,000 / 100,000 caches: indexed vs a linear scan.

Caches hold 1-20 images drawn from a pool of repositories and versions; each query is a
container group of 1-4 images. Both matchers run on the same caches and queries in one run, and
the index is checked to rank exactly like the scan (two implementations that share no ranking
code). Wall-clock percentiles are the figures; CPU-time percentiles beside them say how much of a
slow query was the machine being busy rather than the matcher.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from rich.console import Console
from rich.table import Table

from benchmarks.common import cpu_timed, median, p, quick, timed, write_results
from eci_imagecache.engine.matcher import CacheIndex, linear_match
from eci_imagecache.engine.models import (
    CacheKind,
    CacheRecord,
    CacheStatus,
    EvictionStrategy,
    SnapshotKind,
)
from eci_imagecache.engine.refs import ImageRef

REPOSITORIES = 10_000
VERSIONS = 5
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ref(rng: random.Random) -> ImageRef:
    repo = rng.randrange(REPOSITORIES)
    return ImageRef(
        registry=f"registry{repo % 7}.example.com",
        repository=f"team{repo % 50}/app{repo}",
        tag=f"v{rng.randrange(VERSIONS)}",
    )


def caches(n: int, rng: random.Random) -> list[CacheRecord]:
    return [
        CacheRecord(
            id=f"imc-{i:06d}",
            name=f"cache-{i}",
            kind=CacheKind.MANUAL,
            region="local",
            images=[ref(rng) for _ in range(rng.randint(1, 20))],
            size_gib=rng.choice([20, 25, 30, 40]),
            status=CacheStatus.READY,
            snapshot=SnapshotKind.STANDARD,
            eviction=EvictionStrategy.NEVER,
            created_at=T0 + timedelta(seconds=i),
        )
        for i in range(n)
    ]


def main() -> None:
    rng = random.Random(7)
    sizes = [1_000, 10_000] if quick() else [1_000, 10_000, 100_000]
    queries = [[ref(rng) for _ in range(rng.randint(1, 4))] for _ in range(200)]
    figures: dict[str, float] = {}
    table = Table(title="Matching latency per query (same caches, same queries)")
    columns = (
        "caches",
        "indexed p50 ms",
        "indexed p99 ms",
        "p99 CPU ms",
        "scan p50 ms",
        "speed-up",
    )
    for column in columns:
        table.add_column(column, justify="right")
    for n in sizes:
        records = caches(n, rng)
        index = CacheIndex(records)
        scan_queries = queries[: max(5, 2_000_000 // (n * 10))]
        for q in scan_queries:  # same answer as the reference scan
            indexed_result = index.match(q, "local", 30)
            scanned_result = linear_match(records, q, "local", 30)
            assert indexed_result.ranking == scanned_result.ranking
            assert indexed_result.candidates == scanned_result.candidates
        it = iter(queries * 10)
        indexed = timed(lambda it=it, index=index: index.match(next(it), "local", 30), 1000)
        cit = iter(queries * 10)
        cpu = cpu_timed(lambda cit=cit, index=index: index.match(next(cit), "local", 30), 1000)
        sit = iter(scan_queries * 10)
        scanned = timed(
            lambda sit=sit, records=records: linear_match(records, next(sit), "local", 30),
            len(scan_queries),
        )
        label = f"{n // 1000}k"
        speedup = median(scanned) / median(indexed)
        figures[f"match_p50_ms_{label}"] = round(median(indexed) * 1000, 4)
        figures[f"match_p99_ms_{label}"] = round(p(indexed, 0.99) * 1000, 4)
        figures[f"match_cpu_p99_ms_{label}"] = round(p(cpu, 0.99) * 1000, 4)
        figures[f"scan_p50_ms_{label}"] = round(median(scanned) * 1000, 3)
        figures[f"speedup_vs_scan_{label}"] = round(speedup, 1)
        table.add_row(
            f"{n:,}",
            f"{median(indexed) * 1000:.3f}",
            f"{p(indexed, 0.99) * 1000:.3f}",
            f"{p(cpu, 0.99) * 1000:.3f}",
            f"{median(scanned) * 1000:.1f}",
            f"{speedup:,.0f}x",
        )
    Console().print(table)
    print(f"wrote {write_results('matcher', figures)}")


if __name__ == "__main__":
    main()
