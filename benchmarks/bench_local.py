"""The local backend against a real registry on loopback, measured side by side in one run.

1. Image preparation of a ~400 MB image set by a container group with a matching cache vs
   without one (target ratio <= 0.02).
2. Cache build time vs the machine's limit and vs reference clients, on the same blobs from the
   same registry: a raw streaming copy of every blob to disk (curl, all blobs at once, no parsing
   and no hashing: what `curl -o` does; target build_vs_raw_copy >= 0.7), `skopeo copy` to a
   directory (target build_throughput_vs_skopeo >= 1.5) and, when built (scripts/install-crane.sh,
   run by `make bench`), `crane pull` to an OCI layout. Our build unpacks every layer into the
   layer store as well, which none of those do; build_fetch_only_vs_raw_copy is the same build
   with that step taken out, and build_throughput_vs_curl_tar compares it with the same work done
   by standard tools: each layer streamed from curl into `tar -xz`, as many at once.
3. Bytes fetched when building a second cache that shares base layers, with layer reuse vs
   without (target: with reuse, exactly the new layers' bytes).

``BENCH_QUICK=1`` shrinks the image set to ~40 MB.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from subprocess import PIPE

from benchmarks.common import median, quick, report, without_unpacking
from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.backends.local.context import env_fetch_concurrency
from eci_imagecache.engine.models import CacheSelection, ContainerGroupSpec, ImageCacheSpec
from eci_imagecache.testing.registry import ImageBuilder, RegistryServer, make_layer

MIB = 1024 * 1024


CRANE = "scripts/install-crane.sh"


def push_set(builder: ImageBuilder, scale: int) -> dict[str, int]:
    """bench/app:1 and bench/app:2 share a base; returns content bytes by name (and the blob
    digests of bench/app:1 under "app1_blobs")."""
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
    app1_image = images["bench/app:1"]
    return {name: image.content_bytes for name, image in images.items()} | {
        "app2_new": images["bench/app:2"].config.size + app2[0][0].size,
        "app1_blobs": [app1_image.config.digest, *(layer.digest for layer in app1_image.layers)],
    }


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def crane_binary() -> str | None:
    """crane, built once from the Go module proxy by the full benchmark; the quick one (CI)
    uses a build only if one is already there."""
    if quick():
        cached = sorted(Path.home().glob(".cache/eci-imagecache/crane-*/bin/crane"))
        return str(cached[-1]) if cached else None
    done = subprocess.run([Path(__file__).parent.parent / CRANE], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def raw_copy(urls: list[str], target: Path) -> None:
    """Every blob registry -> disk at once, bytes only: the limit of this machine and registry."""
    target.mkdir()
    args = ["curl", "--silent", "--show-error", "--no-progress-meter", "--fail", "--parallel"]
    args += ["--parallel-max", str(env_fetch_concurrency())]
    for i, url in enumerate(urls):
        args += ["-o", str(target / f"blob-{i}"), url]
    subprocess.run(args, check=True)


def raw_unpack(layer_urls: list[str], target: Path) -> None:
    """Every layer registry -> `tar -xz` into a directory of its own, as many at once as the
    build fetches: fetching and unpacking with standard tools (no hashing, no checks)."""

    def one(index: int, url: str) -> None:
        directory = target / str(index)
        directory.mkdir(parents=True)
        curl = subprocess.Popen(["curl", "--silent", "--show-error", "--fail", url], stdout=PIPE)
        tar = subprocess.run(["tar", "-xzf", "-", "-C", str(directory)], stdin=curl.stdout)
        assert curl.stdout is not None
        curl.stdout.close()
        if curl.wait() or tar.returncode:
            raise RuntimeError(f"curl | tar failed for {url}")

    with ThreadPoolExecutor(max_workers=env_fetch_concurrency()) as pool:
        list(pool.map(one, range(len(layer_urls)), layer_urls))


def main() -> None:
    scale = 10 if quick() else 100  # percent of the full ~400 MB set
    runs = 3 if quick() else 5  # builds vary run to run on this machine: a median of five
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
            uncached_group = group.model_copy(update={"cache": CacheSelection.NONE})

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

            # 2. build time vs the raw limit and vs reference clients, interleaved per run
            urls = [f"{server.url}/v2/bench/app/blobs/{d}" for d in sizes["app1_blobs"]]
            skopeo = shutil.which("skopeo")
            crane = crane_binary()
            references: dict[str, list[str]] = {}
            if skopeo:
                references["skopeo"] = [
                    skopeo,
                    "copy",
                    "--src-tls-verify=false",
                    f"docker://{app1}",
                    "dir:{target}",
                ]
            if crane:
                references["crane"] = [
                    crane,
                    "pull",
                    "--insecure",
                    "--format=oci",
                    app1,
                    "{target}",
                ]
            layer_urls = urls[1:]  # the config blob is not a layer
            times: dict[str, list[float]] = {
                "ours": [],
                "ours_fetch_only": [],
                "raw": [],
                "curl_tar": [],
            }
            times |= {name: [] for name in references}
            for i in range(runs):
                backend = LocalBackend(data_dir=work / f"build-{i}")
                spec = ImageCacheSpec(name="bench", images=[app1])
                times["ours"].append(timed(lambda b=backend, s=spec: b.create_image_cache(s)))
                shutil.rmtree(work / f"build-{i}")
                backend = without_unpacking(LocalBackend(data_dir=work / f"fetch-{i}"))
                times["ours_fetch_only"].append(
                    timed(lambda b=backend, s=spec: b.create_image_cache(s))
                )
                shutil.rmtree(work / f"fetch-{i}")
                target = work / f"raw-{i}"
                times["raw"].append(timed(lambda t=target: raw_copy(urls, t)))
                shutil.rmtree(target)
                target = work / f"curl-tar-{i}"
                times["curl_tar"].append(timed(lambda t=target: raw_unpack(layer_urls, t)))
                shutil.rmtree(target)
                for name, command in references.items():
                    target = work / f"{name}-{i}"
                    args = [a.replace("{target}", str(target)) for a in command]
                    times[name].append(
                        timed(lambda a=args: subprocess.run(a, check=True, capture_output=True))
                    )
                    shutil.rmtree(target)
            mb = sizes["bench/app:1"] / MIB
            figures["fetch_concurrency"] = env_fetch_concurrency()
            figures["build_mb_per_s"] = round(mb / median(times["ours"]), 1)
            figures["raw_copy_mb_per_s"] = round(mb / median(times["raw"]), 1)
            figures["build_vs_raw_copy"] = round(median(times["raw"]) / median(times["ours"]), 3)
            # The same build without unpacking the layers: what the references do.
            figures["build_fetch_only_vs_raw_copy"] = round(
                median(times["raw"]) / median(times["ours_fetch_only"]), 3
            )
            for name in (*references, "curl_tar"):
                figures[f"{name}_mb_per_s"] = round(mb / median(times[name]), 1)
                figures[f"build_throughput_vs_{name}"] = round(
                    median(times[name]) / median(times["ours"]), 3
                )
            for name, samples in times.items():
                figures[f"{name}_s_min"] = round(min(samples), 3)
                figures[f"{name}_s_max"] = round(max(samples), 3)

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

    report(
        "local_backend",
        f"Local backend, {figures['image_set_mb']} MB image set, median of {runs}",
        figures,
    )


if __name__ == "__main__":
    main()
