"""Run every benchmark, then write the report: ``python -m benchmarks.run``.

``BENCH_QUICK=1`` runs small sizes (CI). The report is ``benchmarks/results/REPORT.md`` with
``matching_latency.png``; each benchmark also leaves ``results/<name>.json``.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import RESULTS, quick

BENCHMARKS = {
    "matcher": "benchmarks.bench_matcher",
    "local_backend": "benchmarks.bench_local",
    "provider_overhead": "benchmarks.bench_overhead",
}
TARGETS = {
    "match_p99_ms_100k": "<= 1 ms",
    "speedup_vs_scan_100k": ">= 100x",
    "prep_ratio_cached_vs_uncached": "<= 0.02",
    "build_throughput_vs_skopeo": ">= 0.8",
    "reuse_fetches_exactly_new_bytes": "= 1 (yes)",
    "preview_ratio_ours_vs_noop": "<= 1.5",
    "up_ratio_ours_vs_noop": "<= 1.5",
}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kib = int(meminfo.read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB"
    return f"{os.cpu_count()} cores ({cpu}){memory}, Python {platform.python_version()}"


def plot(matcher: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(
        {
            int(k.rsplit("_", 1)[1].removesuffix("k")) * 1000
            for k in matcher
            if k.startswith("match_p50_ms_")
        }
    )
    label = {n: f"{n // 1000}k" for n in sizes}
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for key, name, style in (
        ("match_p50_ms", "indexed, median", "o-"),
        ("match_p99_ms", "indexed, p99", "s--"),
        ("scan_p50_ms", "linear scan, median", "^-"),
    ):
        ax.plot(sizes, [matcher[f"{key}_{label[n]}"] for n in sizes], style, label=name)
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":", label="1 ms target")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("image caches")
    ax.set_ylabel("time per match (ms)")
    ax.set_title("Automatic matching: indexed vs linear scan")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def report(results: dict[str, dict[str, float]]) -> str:
    lines = [
        "# Benchmark report",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}"
        + (" — short mode (BENCH_QUICK=1)." if quick() else "."),
        "Every ratio compares two things measured side by side in the same run.",
        "",
    ]
    for name, figures in results.items():
        lines += [
            f"## {name.replace('_', ' ')}",
            "",
            "| figure | value | target |",
            "| --- | ---: | --- |",
        ]
        lines += [
            f"| `{key}` | {value:,} | {TARGETS.get(key, '')} |" for key, value in figures.items()
        ]
        lines.append("")
    if "matcher" in results:
        lines += ["![matching latency](matching_latency.png)", ""]
    return "\n".join(lines)


def main() -> None:
    results = {}
    for name, module in BENCHMARKS.items():
        print(f"== {module}", flush=True)
        importlib.import_module(module).main()
        results[name] = json.loads((RESULTS / f"{name}.json").read_text())
    if "matcher" in results:
        plot(results["matcher"], RESULTS / "matching_latency.png")
    (RESULTS / "REPORT.md").write_text(report(results))
    print(f"wrote {RESULTS / 'REPORT.md'}")


if __name__ == "__main__":
    main()
