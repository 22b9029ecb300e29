"""Provider overhead: `pulumi preview` and `pulumi up` of a stack of our resources (image caches
and container groups on the local backend, from a registry on loopback) vs the same number of
no-op dynamic resources, with the real Pulumi CLI, side by side in one run (target <= 1.15).

Previews change nothing, so each stack's preview runs three times (interleaved) and the median
counts; ``up`` runs once. Beside the wall-clock time, each step's CPU time (the CLI and every
process under it: the program, the provider, the language host) is reported: on a shared
machine it says what the step costs, where the wall clock also says how long it waited for a
core.

Pulumi writes the whole deployment after every step (its checkpoints), which costs the CLI
more for every property value a resource carries: both stacks are measured again with
Pulumi's ``PULUMI_SKIP_CHECKPOINTS``, and the figures with the ``_skip_checkpoints`` suffix
say how much of the difference that is.

Our package is byte-compiled first, as pip compiles the Pulumi SDK it installs: an editable
install is not, and with ``PYTHONDONTWRITEBYTECODE`` set (as on the machine of these figures)
every process of "ours" (the program, the provider, each group's supervisor) would otherwise
compile its modules again at start-up, a cost the no-op stack's code does not have and users
do not pay."""

from __future__ import annotations

import compileall
import resource
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from tests.e2e.pulumi_cli import Stack, find_pulumi_bin

import eci_imagecache
from benchmarks.common import median, quick, write_results
from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.engine.models import Quota
from eci_imagecache.testing.registry import ImageBuilder, RegistryServer
from eci_imagecache.testing.runnable import push_runnable

STACK_DIR = Path(__file__).parent / "stacks" / "overhead"
PREVIEWS = 3


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_run(stack: Stack, *args: str) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one CLI command (the CPU time of every process it waited
    for is added to its own when it is reaped)."""
    start, cpu = time.perf_counter(), children_cpu()
    stack.run(*args, timeout=3600)
    return time.perf_counter() - start, children_cpu() - cpu


# Pulumi's CLI writes the whole deployment after every step by default (its checkpoints): a
# cost that grows with resources x property values, and ours carry many more values than no-op
# resources. The second variant turns that off (Pulumi's own PULUMI_SKIP_CHECKPOINTS), so the
# report says which share of the difference is the checkpoints and which is ours.
VARIANTS = {"": {}, "_skip_checkpoints": {"PULUMI_SKIP_CHECKPOINTS": "true"}}


def measure(work: Path, image: str, count: int, env: dict[str, str]) -> dict[str, float]:
    """Preview (median of PREVIEWS) and up of the no-op stack and ours, side by side."""
    stacks = {}
    for mode in ("noop", "ours"):
        stack = Stack(project_dir=STACK_DIR, work=work / mode, name=mode, extra_env=env)
        stacks[mode] = stack.init({"mode": mode, "count": str(count), "image": image})
    # Room for every cache of the stack (the default quota is 50 manual caches).
    LocalBackend(
        data_dir=stacks["ours"].work / "eci-data",
        quota=Quota(max_manual=count, max_auto=count),
    )
    figures: dict[str, float] = {}
    # Interleave the two, so that machine noise falls on both alike. A preview changes
    # nothing: the median of PREVIEWS is taken; an up creates everything, once.
    for step, repeat in ((("preview",), PREVIEWS), (("up", "--yes", "--skip-preview"), 1)):
        samples: dict[str, list[tuple[float, float]]] = {mode: [] for mode in stacks}
        for _ in range(repeat):
            for mode, stack in stacks.items():
                samples[mode].append(timed_run(stack, *step))
        for mode, runs in samples.items():
            figures[f"{step[0]}_s_{mode}"] = round(median([w for w, _ in runs]), 2)
            figures[f"{step[0]}_cpu_s_{mode}"] = round(median([c for _, c in runs]), 2)
    for stack in stacks.values():
        stack.run("destroy", "--yes", "--skip-preview", timeout=3600)
    for step in ("preview", "up"):
        for kind in ("", "cpu_"):
            figures[f"{step}_{kind}ratio_ours_vs_noop"] = round(
                figures[f"{step}_{kind}s_ours"] / figures[f"{step}_{kind}s_noop"], 2
            )
    return figures


def main() -> None:
    if find_pulumi_bin() is None:
        raise SystemExit("no Pulumi CLI: run scripts/install-pulumi-cli.sh")
    count = 40 if quick() else 200
    compileall.compile_dir(Path(eci_imagecache.__file__).parent, quiet=1)
    work = Path(tempfile.mkdtemp(prefix="eci-overhead-"))
    figures: dict[str, float] = {"resources": count}
    try:
        with RegistryServer(work / "registry") as server:
            # A runnable image (busybox): every group really starts its container with crun.
            image = push_runnable(ImageBuilder(server.url)).references(server.host)["job_ok"]
            for suffix, env in VARIANTS.items():
                measured = measure(work / (suffix.strip("_") or "default"), image, count, env)
                figures.update({f"{key}{suffix}": value for key, value in measured.items()})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = Table(title=f"Pulumi with {count} resources: ours vs no-op dynamic resources")
    columns = ("step", "ours s", "no-op s", "ratio", "ours CPU s", "no-op CPU s", "CPU ratio")
    for column in columns:
        table.add_column(column, justify="right")
    for suffix in VARIANTS:
        for step in ("preview", "up"):
            table.add_row(
                step + ("*" if suffix else ""),
                *(
                    str(figures[f"{step}_{kind}{what}{suffix}"])
                    for kind in ("", "cpu_")
                    for what in ("s_ours", "s_noop", "ratio_ours_vs_noop")
                ),
            )
    table.caption = "* with Pulumi's checkpoints skipped (PULUMI_SKIP_CHECKPOINTS=true)"
    Console().print(table)
    print(f"wrote {write_results('provider_overhead', figures)}")


if __name__ == "__main__":
    main()
