"""How a build (and a container group pulling without a cache) fetches: several blobs at once
(bounded), progress as bytes arrive, a failure stopping the other downloads, and blobs cut short
never taken as held."""

import os
import threading
from collections.abc import Iterator
from functools import partial

import pytest

from eci_imagecache.backends.base import BackendError
from eci_imagecache.engine.models import CacheStatus, ContainerGroupSpec, ImageCacheSpec
from eci_imagecache.registry.client import RegistryClient
from eci_imagecache.testing.registry import make_layer

from ..conftest import Registry
from ..support.fault_proxy import Fault, FaultProxy
from .conftest import FAST_RETRY


@pytest.fixture
def proxy(registry: Registry) -> Iterator[FaultProxy]:
    proxy = FaultProxy(registry.server.url)
    yield proxy
    proxy.close()


class CountingRegistry(RegistryClient):
    """The real client, counting the blob downloads in flight at once."""

    lock = threading.Lock()
    in_flight = 0
    most = 0

    def fetch_blob(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        cls = CountingRegistry
        with cls.lock:
            cls.in_flight += 1
            cls.most = max(cls.most, cls.in_flight)
        try:
            return super().fetch_blob(*args, **kwargs)
        finally:
            with cls.lock:
                cls.in_flight -= 1


def slow_blobs(proxy: FaultProxy) -> None:
    # Bodies trickle in 16 KiB pieces: every download lasts long enough to overlap the others.
    proxy.faults.append(Fault(pattern="GET /v2/demo/web/blobs/", slow_body=0.03))


def web(proxy: FaultProxy, name: str = "cache") -> ImageCacheSpec:
    return ImageCacheSpec(name=name, images=[f"{proxy.host}/demo/web:1.0"])


def pull(proxy: FaultProxy) -> ContainerGroupSpec:
    """A group that uses no cache: every blob comes from the registry."""
    return ContainerGroupSpec(
        name="pull",
        cache="none",
        containers=[{"name": "web", "image": f"{proxy.host}/demo/web:1.0"}],
    )


@pytest.mark.parametrize("bound", [1, 2, 3])
def test_blobs_are_fetched_at_once_up_to_the_bound(make_backend, registry, proxy, bound) -> None:
    blobs = registry.samples.images["demo/web:1.0"]
    assert len(blobs.layers) + 1 > bound  # more blobs than the bound, so the bound is what binds
    CountingRegistry.most = 0
    slow_blobs(proxy)
    backend = make_backend(
        registry_factory=partial(CountingRegistry, retry=FAST_RETRY),
        fetch_concurrency=bound,
    )
    record = backend.create_image_cache(web(proxy))
    assert record.status == CacheStatus.READY
    assert CountingRegistry.most == bound


@pytest.mark.parametrize("bound", [2, 3])
def test_a_group_without_a_cache_pulls_blobs_at_once_up_to_the_bound(
    make_backend, registry, proxy, bound
) -> None:
    image = registry.samples.images["demo/web:1.0"]
    assert len(image.layers) + 1 > bound
    CountingRegistry.most = 0
    slow_blobs(proxy)
    backend = make_backend(
        registry_factory=partial(CountingRegistry, retry=FAST_RETRY),
        fetch_concurrency=bound,
    )
    made = backend.create_container_group(pull(proxy))
    assert (made.bytes_fetched, made.bytes_from_cache) == (image.content_bytes, 0)
    assert CountingRegistry.most == bound
    # Each layer was unpacked from its download, ready to mount.
    assert all(backend.ctx.layers.has(layer.digest) for layer in image.layers)


def test_progress_follows_bytes_as_they_arrive(make_backend, registry, proxy) -> None:
    builder = registry.builder()
    layers = [make_layer(f"fetching-progress-{i}", 3 * 1024 * 1024) for i in range(2)]
    image = builder.push_image("fetching/progress", "1", layers)
    builder.close()
    proxy.faults.append(Fault(pattern="GET /v2/fetching/progress/blobs/", slow_body=0.004))
    backend = make_backend(fetch_concurrency=2)
    reports: list[tuple[int, int]] = []
    record = backend.create_image_cache(
        ImageCacheSpec(name="progress", images=[f"{proxy.host}/fetching/progress:1"]),
        progress=lambda done, total: reports.append((done, total)),
    )
    assert record.fetched_bytes == image.content_bytes
    assert {total for _, total in reports} == {image.content_bytes}
    done = [d for d, _ in reports]
    assert done == sorted(done) and done[-1] == image.content_bytes
    # Reports come while blobs are still arriving, not only when each one is complete.
    sizes = [blob.size for blob in [image.config, *image.layers]]
    whole = {sum(s for i, s in enumerate(sizes) if mask >> i & 1) for mask in range(8)}
    assert any(d not in whole for d in done)
    assert record.progress == 100


def test_a_failed_blob_stops_the_other_downloads(make_backend, registry, proxy) -> None:
    image = registry.samples.images["demo/web:1.0"]
    broken, *others = sorted([image.config, *image.layers], key=lambda b: b.size)
    slow_blobs(proxy)
    proxy.faults.insert(0, Fault(pattern=f"GET /v2/demo/web/blobs/{broken.digest}", status=500))
    backend = make_backend(fetch_concurrency=4)
    with pytest.raises(BackendError, match="answered 500"):
        backend.create_image_cache(web(proxy))
    [failed] = backend.list_image_caches()
    assert failed.status == CacheStatus.FAILED
    # The slow downloads were cut at their next chunk: none finished, none left a partial file.
    assert not any(backend.ctx.holds(b.digest) for b in others)
    assert list(backend.blobs.tmp.iterdir()) == []
    assert list(backend.ctx.layers.tmp.iterdir()) == []


def test_a_blob_cut_short_is_not_held_and_is_fetched_again(backend, registry) -> None:
    image = registry.samples.images["demo/web:1.0"]
    backend.create_image_cache(ImageCacheSpec(name="first", images=[registry.ref("demo/web:1.0")]))
    # Layers are kept unpacked; the image config is the blob the store keeps.
    config = image.config
    path = backend.blobs.path(config.digest)
    # What a power cut can leave of a blob that was never flushed: a shorter file.
    os.chmod(path, 0o644)
    os.truncate(path, config.size // 2)
    second = backend.create_image_cache(
        ImageCacheSpec(name="second", images=[registry.ref("demo/web:1.0")], layer_reuse=True)
    )
    assert second.status == CacheStatus.READY
    assert second.fetched_bytes == config.size
    assert path.stat().st_size == config.size


def test_fsync_policy_builds_the_same_cache(make_backend, registry) -> None:
    backend = make_backend(fsync=True)
    assert backend.blobs.fsync and backend.ctx.layers.fsync
    record = backend.create_image_cache(
        ImageCacheSpec(name="durable", images=[registry.ref("demo/web:1.0")])
    )
    assert record.status == CacheStatus.READY


def manifest_requests(proxy: FaultProxy) -> int:
    return sum(1 for line in proxy.hits if line.startswith("GET /v2/demo/web/manifests/"))


def test_plans_reuse_a_manifest_just_resolved_and_builds_ask_again(backend, proxy) -> None:
    spec = web(proxy)
    first = backend.plan_image_cache(spec)
    assert manifest_requests(proxy) == 1
    # A preview plans many caches of the same images: they come from the one just resolved.
    for _ in range(3):
        assert backend.plan_image_cache(spec) == first
    assert manifest_requests(proxy) == 1
    backend.create_image_cache(spec)
    assert manifest_requests(proxy) == 2


def test_plans_with_credentials_always_ask_the_registry(backend, proxy) -> None:
    spec = ImageCacheSpec(
        name="private",
        images=[f"{proxy.host}/demo/web:1.0"],
        credentials=[{"server": proxy.host, "username": "someone", "password": "unused-here"}],
    )
    for expected in (1, 2):
        backend.plan_image_cache(spec)
        assert manifest_requests(proxy) == expected


def test_a_layer_whose_blob_fails_its_digest_is_not_unpacked(backend, registry, proxy) -> None:
    # Each layer is unpacked while it downloads: what the download fed to the unpacking must
    # not become a layer when the blob turns out wrong, and the error is the digest's.
    image = registry.samples.images["demo/web:1.0"]
    layer = max(image.layers, key=lambda blob: blob.size)
    proxy.faults.append(Fault(pattern=f"GET /v2/demo/web/blobs/{layer.digest}", corrupt=True))
    with pytest.raises(BackendError, match="does not match its digest"):
        backend.create_image_cache(web(proxy))
    assert not backend.ctx.layers.has(layer.digest)
    assert list(backend.ctx.layers.tmp.iterdir()) == []
    assert list(backend.blobs.tmp.iterdir()) == []


def test_blobs_come_through_the_proxy_the_environment_names(
    make_backend, registry, proxy, monkeypatch, tmp_path
) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://{proxy.host}")
    image = registry.samples.images["demo/web:1.0"]
    blobs = [
        f"GET {registry.server.url}/v2/demo/web/blobs/{blob.digest}"
        for blob in [image.config, *image.layers]
    ]
    spec = ImageCacheSpec(name="proxied", images=[registry.ref("demo/web:1.0")])
    proxied = make_backend(data_dir=tmp_path / "proxied").create_image_cache(spec)
    assert proxied.status == CacheStatus.READY
    assert set(blobs) <= set(proxy.hits)

    proxy.hits.clear()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    direct = make_backend(data_dir=tmp_path / "direct").create_image_cache(spec)
    assert direct.status == CacheStatus.READY
    assert not set(blobs) & set(proxy.hits)


def test_a_group_whose_layer_blob_fails_its_digest_leaves_no_layer_and_no_partial_file(
    backend, registry, proxy
) -> None:
    # The group's pull unpacks each layer while it downloads, as a build does: the wrong blob's
    # layer is discarded, and the downloads it stopped leave nothing half-written behind.
    image = registry.samples.images["demo/web:1.0"]
    layer = max(image.layers, key=lambda blob: blob.size)
    proxy.faults.append(Fault(pattern=f"GET /v2/demo/web/blobs/{layer.digest}", corrupt=True))
    slow_blobs(proxy)
    with pytest.raises(BackendError, match=r"container group pull: .*does not match its digest"):
        backend.create_container_group(pull(proxy))
    assert not backend.ctx.layers.has(layer.digest)
    assert not backend.blobs.has(layer.digest)
    assert list(backend.ctx.layers.tmp.iterdir()) == []
    assert list(backend.blobs.tmp.iterdir()) == []
    assert backend.list_container_groups() == []


def test_a_build_that_reuses_nothing_fetches_every_layer_and_keeps_each_once(
    backend, registry, proxy
) -> None:
    image = registry.samples.images["demo/web:1.0"]
    backend.create_image_cache(web(proxy, "first"))
    proxy.hits.clear()
    second = backend.create_image_cache(web(proxy, "second"))  # layer reuse is off by default
    assert second.status == CacheStatus.READY
    assert second.fetched_bytes == second.content_bytes
    for blob in (image.config, *image.layers):
        assert f"GET /v2/demo/web/blobs/{blob.digest}" in proxy.hits
    # The layers were unpacked by the first build: the second verified their bytes and kept
    # nothing more; the blob store holds the image config only.
    assert list(backend.blobs.digests()) == [image.config.digest]
    assert all(backend.ctx.layers.has(layer.digest) for layer in image.layers)
