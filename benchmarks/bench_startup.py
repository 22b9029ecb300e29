"""Container start-up on the local backend, from a cache vs without, measured side by side.

The vendor's example is a flink image of ~386 MB: ~50 s of image preparation without a cache,
~0 with one. Here an image set of that shape (a runnable busybox base and layers of 1 to 200 MB,
~386 MB compressed) is served by a real registry on loopback, and container groups are started
by the local backend with crun:

1. create-to-first-process (from the create call to the first container's process running)
   with a matching cache vs without one (target ratio <= 0.05);
2. create-to-first-process from a cache for the ~386 MB image vs a ~10 MB one (target <= 1.5:
   starting from a cache is a mount, independent of image size);
3. cache build throughput with the layers unpacked vs the same build without unpacking
   (target >= 0.8: unpacking runs beside the downloads and is not the bottleneck).

``BENCH_QUICK=1`` shrinks the large image to ~40 MB and runs fewer rounds.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.common import median, quick, report, without_unpacking
from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.engine.models import ContainerGroupSpec, ImageCacheSpec
from eci_imagecache.runtime import host
from eci_imagecache.testing.registry import ImageBuilder, RegistryServer, make_layer
from eci_imagecache.testing.runnable import busybox_base_layer, push_image

MIB = 1024 * 1024
# Layer sizes (MiB) shaped like a flink image: OS, JRE, flink distribution, libraries, config.
FLINK_LAYERS = [30, 120, 190, 40, 5, 1]


def push_set(builder: ImageBuilder, scale: int) -> dict[str, int]:
    base = busybox_base_layer()
    # A long-running service that ends on SIGTERM (a bare sleep as PID 1 ignores it, and each
    # delete would wait out the grace period).
    service = "trap 'exit 0' TERM; sleep 3600 & wait"
    config = {"Cmd": ["/bin/sh", "-c", service], "Env": ["PATH=/bin"]}
    flink = [
        make_layer(f"flink-{n}", size * MIB * scale // 100) for n, size in enumerate(FLINK_LAYERS)
    ]
    small = [make_layer("small-app", 10 * MIB - base[0].size)]
    images = {
        "bench/flink:1.17": push_image(builder, "bench/flink", "1.17", [base, *flink], config),
        "bench/small:1": push_image(builder, "bench/small", "1", [base, *small], config),
    }
    return {name: image.content_bytes for name, image in images.items()}


def start(backend: LocalBackend, image: str, cache: str) -> float:
    """Seconds from the create call to the first container's process running; the group is
    deleted (containers stopped) afterwards. Every start, with a cache or without, finds a shim
    ready (the runtime keeps one per process): the two differ by the images' preparation."""
    spec = ContainerGroupSpec(
        name="bench", cache=cache, containers=[{"name": "main", "image": image}]
    )
    backend.ctx.runtime.ready()
    time.sleep(0.5)  # its interpreter is up (outside the time measured)
    requested = time.time()
    record = backend.create_container_group(spec)
    state = backend.ctx.runtime.group(record.id)
    backend.delete_container_group(record.id)
    if state is None or state.first_process_at is None:
        raise RuntimeError(f"the group did not start: {record.status_reason}")
    return state.first_process_at - requested


def build(work: Path, name: str, image: str, unpack: bool) -> float:
    backend = LocalBackend(data_dir=work / name)
    if not unpack:
        without_unpacking(backend)
    started = time.perf_counter()
    backend.create_image_cache(ImageCacheSpec(name="bench", images=[image]))
    seconds = time.perf_counter() - started
    shutil.rmtree(work / name)
    return seconds


def main() -> None:
    reason = host.unavailable()
    if reason:
        raise SystemExit(f"containers cannot run here: {reason}")
    scale = 10 if quick() else 100
    runs = 2 if quick() else 3
    work = Path(tempfile.mkdtemp(prefix="eci-bench-startup-"))
    figures: dict[str, float] = {}
    try:
        with RegistryServer(work / "registry") as server:
            builder = ImageBuilder(server.url)
            sizes = push_set(builder, scale)
            builder.close()
            flink = f"{server.host}/bench/flink:1.17"
            small = f"{server.host}/bench/small:1"
            figures["image_set_mb"] = round(sizes["bench/flink:1.17"] / MIB, 1)
            figures["small_image_mb"] = round(sizes["bench/small:1"] / MIB, 1)

            cached = LocalBackend(data_dir=work / "cached")
            cached.create_image_cache(ImageCacheSpec(name="flink", images=[flink]))
            cached.create_image_cache(ImageCacheSpec(name="small", images=[small]))
            start(cached, flink, "auto")  # warm: the interpreter's imports, page cache
            with_cache, without, with_cache_small = [], [], []
            for i in range(runs):
                with_cache.append(start(cached, flink, "auto"))
                with_cache_small.append(start(cached, small, "auto"))
                fresh = LocalBackend(data_dir=work / f"uncached-{i}")
                without.append(start(fresh, flink, "none"))
                shutil.rmtree(work / f"uncached-{i}")
            figures["startup_cached_s"] = round(median(with_cache), 4)
            figures["startup_uncached_s"] = round(median(without), 3)
            figures["startup_cached_small_s"] = round(median(with_cache_small), 4)
            figures["startup_ratio_cached_vs_uncached"] = round(
                median(with_cache) / median(without), 4
            )
            figures["startup_cached_400mb_vs_10mb"] = round(
                median(with_cache) / median(with_cache_small), 3
            )

            # Builds vary more than starts on this machine (each writes ~400 MB of new pages):
            # a median of five.
            with_unpack, without_unpack = [], []
            for i in range(2 if quick() else 5):
                without_unpack.append(build(work, f"build-plain-{i}", flink, unpack=False))
                with_unpack.append(build(work, f"build-unpack-{i}", flink, unpack=True))
            figures["build_mb_per_s_with_unpack"] = round(
                sizes["bench/flink:1.17"] / MIB / median(with_unpack), 1
            )
            figures["build_mb_per_s_without_unpack"] = round(
                sizes["bench/flink:1.17"] / MIB / median(without_unpack), 1
            )
            figures["build_with_unpack_vs_without"] = round(
                median(without_unpack) / median(with_unpack), 3
            )
            for group in cached.list_container_groups():
                cached.delete_container_group(group.id)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    report(
        "startup",
        f"Container start-up, {figures['image_set_mb']} MB image, median of {runs} (builds: of 5)",
        figures,
    )


if __name__ == "__main__":
    main()
