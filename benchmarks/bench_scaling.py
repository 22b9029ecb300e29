"""Cost grows only with work: provider hooks and `caches list` against 10, 1,000 and 10,000
caches in the store, and build time against the bytes that are new.

1. Each Pulumi hook of an ImageCache and a ContainerGroup that touches one cache (check, diff,
   create, read, update, delete; the group's check and create match against every cache) is
   called in process, as the provider runs it, on a local store that already holds N caches.
   A hook's latency should stay about flat as N grows; `caches list` shows every cache, so it
   grows with N (as a table and as JSON).
2. Caches of a ~200 MB image set are built with layer reuse when 0%, 25%, 50% and 100% of the
   bytes are new: build time should be linear in the new bytes and about zero with none.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pulumi.dynamic import ConfigureRequest
from pulumi.dynamic.config import Config
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from benchmarks.common import median, quick, write_results
from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.cli.main import app
from eci_imagecache.dynamic.container_group_provider import ContainerGroupProvider
from eci_imagecache.dynamic.image_cache_provider import ImageCacheProvider
from eci_imagecache.engine.models import (
    CacheKind,
    CacheRecord,
    CacheStatus,
    EvictionStrategy,
    ImageCacheSpec,
    Quota,
    SnapshotKind,
)
from eci_imagecache.engine.refs import ImageRef
from eci_imagecache.testing.registry import ImageBuilder, RegistryServer, make_layer, push_samples

MIB = 1024 * 1024
HOOKS = (
    "cache_check",
    "cache_diff",
    "cache_create",
    "cache_read",
    "cache_update",
    "group_check",
    "group_create",
    "group_delete",
    "cache_delete",
)


def seed(backend: LocalBackend, count: int, rng: random.Random) -> None:
    """``count`` Ready manual caches of 1-5 images from 2,000 repositories, in one commit."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    store = backend.store
    with store.transaction() as db:
        for i in range(count):
            images = [
                ImageRef(
                    registry="registry.example.com",
                    repository=f"team{r % 40}/app{r}",
                    tag=f"v{rng.randrange(4)}",
                )
                for r in (rng.randrange(2000) for _ in range(rng.randint(1, 5)))
            ]
            record = CacheRecord(
                id=f"imc-seed{i:08d}",
                name=f"seed-{i}",
                kind=CacheKind.MANUAL,
                region=backend.region,
                images=images,
                size_gib=rng.choice([20, 25, 30]),
                status=CacheStatus.READY,
                snapshot=SnapshotKind.STANDARD,
                eviction=EvictionStrategy.NEVER,
                created_at=start + timedelta(seconds=i),
            )
            store.put_cache(db, record)
            store.set_layers(db, record.id, {f"sha256:{i:064x}": 1000})


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def hooks_once(placement: dict[str, Any], image: str, i: int) -> dict[str, float]:
    """One resource's life through the hooks Pulumi calls, each timed."""
    caches, groups = ImageCacheProvider(), ContainerGroupProvider()
    # As Pulumi does: the stack's config names the store (never the user's own data dir).
    config = Config({"eci:backend": "local", "eci:dataDir": placement["data_dir"]}, "bench")
    for provider in (caches, groups):
        provider.configure(ConfigureRequest(config))
    seconds: dict[str, float] = {}
    news = {**placement, "name": f"bench-{i}", "images": [image], "size_gib": 20}
    seconds["cache_check"], checked = timed(lambda: caches.check({}, news))
    inputs = checked.inputs
    seconds["cache_diff"], _ = timed(lambda: caches.diff("", inputs, inputs))
    seconds["cache_create"], created = timed(lambda: caches.create(inputs))
    cache_id, outs = created.id, created.outs
    seconds["cache_read"], _ = timed(lambda: caches.read(cache_id, outs))
    changed = {**inputs, "retention_days": 30}
    seconds["cache_update"], _ = timed(lambda: caches.update(cache_id, outs, changed))
    group = {
        **placement,
        "name": f"bench-{i}",
        "containers": [{"name": "web", "image": image}],
        "cache": "auto",
    }
    seconds["group_check"], checked = timed(lambda: groups.check({}, group))
    seconds["group_create"], made = timed(lambda: groups.create(checked.inputs))
    seconds["group_delete"], _ = timed(lambda: groups.delete(made.id, made.outs))
    seconds["cache_delete"], _ = timed(lambda: caches.delete(cache_id, outs))
    return seconds


def list_caches(runner: CliRunner, options: list[str], env: dict[str, str]) -> None:
    """`eci-imagecache caches list` in process (options after the subcommand, or before it)."""
    result = runner.invoke(app, ["caches", "list", *options], env=env)
    if result.exit_code != 0:
        result = runner.invoke(app, [*options, "caches", "list"], env=env)
    assert result.exit_code == 0, result.output


def scaling(work: Path, image: str, sizes: list[int], repeat: int) -> dict[str, float]:
    rng = random.Random(11)
    runner = CliRunner()
    figures: dict[str, float] = {}
    for count in sizes:
        data = work / f"store-{count}"
        backend = LocalBackend(data_dir=data, quota=Quota(max_manual=count + 50, max_auto=50))
        seed(backend, count, rng)
        placement = {
            "backend": "local",
            "region": "local",
            "endpoint": None,
            "data_dir": str(data),
            "timeout_seconds": None,
        }
        hooks_once(placement, image, -1)  # warm: the provider opens its backend once
        runs = [hooks_once(placement, image, i) for i in range(repeat)]
        for hook in HOOKS:
            figures[f"{hook}_ms_{count}"] = round(median([r[hook] for r in runs]) * 1000, 2)
        env = {"ECI_IMAGECACHE_HOME": str(data), "COLUMNS": "200"}
        for name, args in (("caches_list", []), ("caches_list_json", ["--json"])):
            listing = []
            for _ in range(3 if count < 10_000 else 1):
                seconds, _ = timed(lambda a=args, e=env: list_caches(runner, a, e))
                listing.append(seconds)
            figures[f"{name}_ms_{count}"] = round(median(listing) * 1000, 1)
        shutil.rmtree(data)
    return figures


def build_vs_new_bytes(work: Path, server: RegistryServer, scale: int) -> dict[str, float]:
    """Four layers of equal size; a first cache holds the "old" ones, then caches are built
    whose images have 0-4 new layers, with layer reuse."""
    layer_size = 50 * scale * MIB // 100
    old = [make_layer(f"scaling-old-{i}", layer_size) for i in range(4)]
    new = [make_layer(f"scaling-new-{i}", layer_size) for i in range(4)]
    builder = ImageBuilder(server.url)
    builder.push_image("scaling/base", "1", old)
    for fresh in range(5):
        builder.push_image("scaling/app", str(fresh), new[:fresh] + old[fresh:])
    builder.close()
    figures: dict[str, float] = {}
    points = []
    for fresh in (0, 1, 2, 4):
        samples = []
        for run in range(3):
            backend = LocalBackend(data_dir=work / f"builds-{fresh}-{run}")
            backend.create_image_cache(
                ImageCacheSpec(name="base", images=[f"{server.host}/scaling/base:1"])
            )
            spec = ImageCacheSpec(
                name="app", images=[f"{server.host}/scaling/app:{fresh}"], layer_reuse=True
            )
            seconds, record = timed(lambda b=backend, s=spec: b.create_image_cache(s))
            samples.append(seconds)
            new_mb = record.fetched_bytes / MIB
            shutil.rmtree(work / f"builds-{fresh}-{run}")
        points.append((new_mb, median(samples)))
        figures[f"build_s_new_{round(new_mb)}mb"] = round(median(samples), 3)
    # Least squares: seconds = intercept + slope * new MB.
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    intercept = my - slope * mx
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in points)
    ss_tot = sum((y - my) ** 2 for _, y in points)
    figures["build_s_per_new_gb"] = round(slope * 1024, 3)
    figures["build_s_with_nothing_new"] = round(points[0][1], 3)
    figures["build_linear_fit_r2"] = round(1 - ss_res / ss_tot, 4) if ss_tot else 1.0
    return figures


def main() -> None:
    sizes = [10, 1_000] if quick() else [10, 1_000, 10_000]
    repeat = 3 if quick() else 5
    scale = 10 if quick() else 100  # percent of the ~200 MB of layers
    work = Path(tempfile.mkdtemp(prefix="eci-scaling-"))
    try:
        with RegistryServer(work / "registry") as server:
            push_samples(ImageBuilder(server.url))
            image = f"{server.host}/demo/web:1.0"
            figures = scaling(work, image, sizes, repeat)
            figures |= build_vs_new_bytes(work, server, scale)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    table = Table(title="Hook latency (ms, median) against the caches in the store")
    table.add_column("hook")
    for count in sizes:
        table.add_column(f"{count:,} caches", justify="right")
    for name in (*HOOKS, "caches_list", "caches_list_json"):
        table.add_row(name, *(f"{figures[f'{name}_ms_{count}']:,}" for count in sizes))
    Console().print(table)
    builds = Table(title="Build time against new bytes (layer reuse on)")
    builds.add_column("figure")
    builds.add_column("value", justify="right")
    for key, value in figures.items():
        if key.startswith("build_"):
            builds.add_row(key, f"{value:,}")
    Console().print(builds)
    print(f"wrote {write_results('scaling', figures)}")


if __name__ == "__main__":
    main()
