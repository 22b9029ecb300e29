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

from benchmarks.common import RESULTS, quick, shown

BENCHMARKS = {
    "matcher": "benchmarks.bench_matcher",
    "local_backend": "benchmarks.bench_local",
    "provider_overhead": "benchmarks.bench_overhead",
    "scaling": "benchmarks.bench_scaling",
    "startup": "benchmarks.bench_startup",
    "emulator_load": "benchmarks.bench_emulator_load",
    "anchors": "benchmarks.bench_anchors",
}
TARGETS = {
    "match_p99_ms_100k": "<= 1 ms",
    "speedup_vs_scan_100k": ">= 100x",
    "prep_ratio_cached_vs_uncached": "<= 0.02",
    "build_vs_raw_copy": ">= 0.7",
    "build_throughput_vs_skopeo": ">= 1.5",
    "reuse_fetches_exactly_new_bytes": "= 1 (yes)",
    "preview_vs_same_values": "<= 1.05",
    "up_vs_same_values": "<= 1.05",
    "preview_ratio_ours_vs_noop": "<= 1.15",
    "up_ratio_ours_vs_noop": "<= 1.15",
    "build_s_with_nothing_new": "~ 0",
    "build_linear_fit_r2": "~ 1 (linear)",
    "startup_ratio_cached_vs_uncached": "<= 0.05",
    "startup_cached_400mb_vs_10mb": "<= 1.5",
    "build_with_unpack_vs_without": ">= 0.8",
    "clients_starved_50": "= 0",
    "clients_starved_200": "= 0",
    "creates_unanswered_50": "= 0",
    "creates_unanswered_200": "= 0",
    # Each the anchor's time over ours: above 1, we are faster.
    "build_vs_containerd": ">= 4",
    "start_vs_ctr_crun": ">= 3",
    "burst20_vs_ctr_crun": ">= 1.5",
    "burst100_vs_ctr_crun": ">= 1.5",
    "first_start_vs_steady": "<= 1.5",
}
# What a ratio compares, where its name does not say it all (the report's last column).
COMPARES = {
    "preview_vs_same_values": "ours / resources with ours' inputs and outputs, no hooks",
    "up_vs_same_values": "ours / the same values, doing the same builds and starts",
    "preview_ratio_ours_vs_noop": "ours / no-op resources of 2 values (unlike work)",
    "up_ratio_ours_vs_noop": "ours / no-op resources that build and start nothing",
    "build_vs_containerd": "ctr images pull / our cache build, same image",
    "build_vs_podman": "podman pull / our cache build, same image",
    "start_vs_ctr_crun": "ctr run -d (crun) / our group create, to process running",
    "start_vs_podman": "podman run -d (crun) / our group create",
    "burst20_vs_ctr_crun": "20 ctr run -d at once / 20 creates at once, until all run",
    "burst100_vs_ctr_crun": "100 ctr run -d at once / 100 creates at once",
    "first_start_vs_steady": "ours: first start in a fresh process / steady start",
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


def plot_scaling(scaling: dict[str, float], path: Path) -> None:
    """Hook latency and `caches list` against caches in the store; build time against new
    bytes with its least-squares line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = sorted({int(k.rsplit("_", 1)[1]) for k in scaling if k.startswith("cache_read_ms_")})
    hooks = sorted({k.rsplit("_ms_", 1)[0] for k in scaling if "_ms_" in k})
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.4), dpi=110)
    left.set_prop_cycle(color=plt.get_cmap("tab20").colors)
    for hook in hooks:
        style = "s--" if hook.startswith("caches_list") else "o-"
        left.plot(counts, [scaling[f"{hook}_ms_{n}"] for n in counts], style, label=hook)
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("image caches in the store")
    left.set_ylabel("milliseconds (median)")
    left.set_title("Provider hooks touching one cache, and `caches list`")
    left.legend(fontsize=7, ncol=2)
    left.grid(True, which="both", alpha=0.3)
    points = sorted(
        (int(k.removeprefix("build_s_new_").removesuffix("mb")), v)
        for k, v in scaling.items()
        if k.startswith("build_s_new_")
    )
    xs = [x for x, _ in points]
    right.plot(xs, [y for _, y in points], "o", label="build (median)")
    slope = scaling["build_s_per_new_gb"] / 1024
    intercept = points[0][1]
    if len(points) > 1:
        mean_x = sum(xs) / len(xs)
        intercept = sum(y for _, y in points) / len(points) - slope * mean_x
    right.plot(
        xs,
        [intercept + slope * x for x in xs],
        "-",
        label=f"fit: {scaling['build_s_per_new_gb']} s/GB, r2 {scaling['build_linear_fit_r2']}",
    )
    right.set_xlabel("new MB in the image set (the rest reused)")
    right.set_ylabel("build seconds")
    right.set_title("Build time against new bytes")
    right.legend()
    right.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def compares(key: str) -> str:
    """What a figure compares (its variants too: ``*_cpu_*``, ``*_skip_checkpoints``)."""
    base = key.removesuffix("_skip_checkpoints").replace("_cpu_", "_")
    return COMPARES.get(base, "")


def report(results: dict[str, dict[str, float | str]]) -> str:
    lines = [
        "# Benchmark report",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}"
        + (" — short mode (BENCH_QUICK=1)." if quick() else "."),
        "Every ratio compares two things measured side by side in the same run.",
        f"Load average when the report was written: {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores (other work on the machine inflates wall-clock figures).",
        "",
    ]
    for name, figures in results.items():
        lines += [
            f"## {name.replace('_', ' ')}",
            "",
            "| figure | value | target | compares |",
            "| --- | ---: | --- | --- |",
        ]
        lines += [
            f"| `{key}` | {shown(value)} | {TARGETS.get(key, '')} | {compares(key)} |"
            for key, value in figures.items()
        ]
        lines.append("")
    if "matcher" in results:
        lines += ["![matching latency](matching_latency.png)", ""]
    if "scaling" in results:
        lines += ["![cost grows only with work](scaling.png)", ""]
    return "\n".join(lines)


def main() -> None:
    results = {}
    for name, module in BENCHMARKS.items():
        print(f"== {module}", flush=True)
        importlib.import_module(module).main()
        results[name] = json.loads((RESULTS / f"{name}.json").read_text())
    if "matcher" in results:
        plot(results["matcher"], RESULTS / "matching_latency.png")
    if "scaling" in results:
        plot_scaling(results["scaling"], RESULTS / "scaling.png")
    (RESULTS / "REPORT.md").write_text(report(results))
    print(f"wrote {RESULTS / 'REPORT.md'}")


if __name__ == "__main__":
    main()
