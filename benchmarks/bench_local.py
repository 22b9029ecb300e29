"""The local backend against a real registry on loopback, measured side by side in one run.

1. Image preparation of a ~400 MB image set by a container group with a matching cache vs
   without one (target ratio <= 0.02).
2. Cache build throughput vs a reference client (skopeo copy to a directory) pulling the same
   blobs from the same registry (target ratio >= 0.8).
3. Bytes fetched when building a second cache that shares base layers, with layer reuse vs
   without (target: with reuse, exactly the new layers' bytes).

``BENCH_QUICK=1`` shrinks the image set to ~40 MB.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.common import median, quick, write_results
from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.engine.models import ContainerGroupSpec, ImageCacheSpec
from eci_imagecache.testing.registry import ImageBuilder, RegistryServer, make_layer

MIB = 1024 * 1024


def push_set(builder: ImageBuilder, scale: int) -> dict[str, int]:
    """bench/app:1 and bench/app:2 share a base; returns content bytes by name."""
    base = [make_layer("bench-base", 200 * scale * MIB // 100)]
    app1 = [
        make_layer("bench-app1-a", 100 * scale * MIB // 100),
        make_layer("bench-app1-b", 100 * scale * MIB // 100),
    ]
    app2 = [make_layer("bench-app2", 50 * scale * MIB // 100)]
    images = {
        "bench/app:1": builder.push_image("bench/app", "1", base + app1),
        "bench/app:2": builder.push_image("bench/app", "2", base + app2),
    }
    return {name: image.content_bytes for name, image in images.items()} | {
        "app2_new": images["bench/app:2"].config.size + app2[0][0].size
    }


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    scale = 10 if quick() else 100  # percent of the full ~400 MB set
    runs = 3
    work = Path(tempfile.mkdtemp(prefix="eci-bench-"))
    figures: dict[str, float] = {}
    try:
        with RegistryServer(work / "registry") as server:
            builder = ImageBuilder(server.url)
            sizes = push_set(builder, scale)
            builder.close()
            app1 = f"{server.host}/bench/app:1"
            app2 = f"{server.host}/bench/app:2"
            group = ContainerGroupSpec(
                name="bench", cache="auto", containers=[{"name": "app", "image": app1}]
            )
            uncached_group = group.model_copy(update={"cache": "none"})

            # 1. preparation with a matching cache vs without
            cached_backend = LocalBackend(data_dir=work / "cached")
            cached_backend.create_image_cache(ImageCacheSpec(name="bench", images=[app1]))
            with_cache, without = [], []
            for i in range(runs):
                with_cache.append(cached_backend.create_container_group(group).preparation_seconds)
                fresh = LocalBackend(data_dir=work / f"uncached-{i}")
                without.append(fresh.create_container_group(uncached_group).preparation_seconds)
                shutil.rmtree(work / f"uncached-{i}")
            figures["prep_with_cache_s"] = round(median(with_cache), 4)
            figures["prep_without_cache_s"] = round(median(without), 3)
            figures["prep_ratio_cached_vs_uncached"] = round(
                median(with_cache) / median(without), 4
            )
            figures["image_set_mb"] = round(sizes["bench/app:1"] / MIB, 1)

            # 2. build throughput vs skopeo
            ours, theirs = [], []
            skopeo = shutil.which("skopeo")
            for i in range(runs):
                backend = LocalBackend(data_dir=work / f"build-{i}")
                ours.append(
                    timed(
                        lambda b=backend: b.create_image_cache(
                            ImageCacheSpec(name="bench", images=[app1])
                        )
                    )
                )
                shutil.rmtree(work / f"build-{i}")
                if skopeo:
                    target = work / f"skopeo-{i}"
                    theirs.append(
                        timed(
                            lambda t=target: subprocess.run(
                                [
                                    skopeo,
                                    "copy",
                                    "--src-tls-verify=false",
                                    f"docker://{app1}",
                                    f"dir:{t}",
                                ],
                                check=True,
                                capture_output=True,
                            )
                        )
                    )
                    shutil.rmtree(target)
            figures["build_mb_per_s"] = round(sizes["bench/app:1"] / MIB / median(ours), 1)
            if theirs:
                figures["skopeo_mb_per_s"] = round(sizes["bench/app:1"] / MIB / median(theirs), 1)
                figures["build_throughput_vs_skopeo"] = round(median(theirs) / median(ours), 3)

            # 3. bytes fetched for a second cache sharing the base, with reuse vs without
            for reuse in (True, False):
                backend = LocalBackend(data_dir=work / f"reuse-{reuse}")
                backend.create_image_cache(ImageCacheSpec(name="first", images=[app1]))
                second = backend.create_image_cache(
                    ImageCacheSpec(name="second", images=[app2], layer_reuse=reuse)
                )
                figures[f"second_cache_fetched_bytes_{'reuse' if reuse else 'no_reuse'}"] = (
                    second.fetched_bytes
                )
            figures["second_cache_new_layer_bytes"] = sizes["app2_new"]
            figures["reuse_fetches_exactly_new_bytes"] = int(
                figures["second_cache_fetched_bytes_reuse"] == sizes["app2_new"]
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    table = Table(title=f"Local backend, {figures['image_set_mb']} MB image set, median of {runs}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, f"{value:,}")
    Console().print(table)
    print(f"wrote {write_results('local_backend', figures)}")


if __name__ == "__main__":
    main()
