"""Cost that follows work: deleting a cache frees the blobs and unpacked layers only it held,
through the real registry, measured with coreutils' du (not our own accounting)."""

import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.engine.models import ContainerGroupSpec, GroupStatus, ImageCacheSpec
from eci_imagecache.runtime import host

from ..conftest import Registry, missing

STATE_FILES = "state.db*"  # SQLite's database, WAL and shared memory
STATE_GROWTH_LIMIT = 1 << 20  # a record of the deletion, never the content (MiB-sized layers)


def du(path: Path, *args: str) -> int:
    """Bytes on disk under ``path`` (blocks, as `du` counts them)."""
    out = subprocess.run(
        ["du", "--summarize", "--block-size=1", *args, str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out.split()[0])


def sizes(data: Path) -> tuple[int, int]:
    """(everything but the database, the database's files)."""
    content = du(data, f"--exclude={STATE_FILES}")
    return content, du(data) - content


def cache(registry: Registry, *names: str, name: str = "cache") -> ImageCacheSpec:
    return ImageCacheSpec(name=name, images=[registry.ref(n) for n in names])


def layers_of(registry: Registry, name: str) -> list[str]:
    return [layer.digest for layer in registry.samples.images[name].layers]


def test_deleting_the_only_cache_of_an_image_returns_the_data_dir_to_its_size_before_it(
    backend: LocalBackend, registry: Registry
) -> None:
    data = backend.data_dir
    content_before, state_before = sizes(data)
    record = backend.create_image_cache(cache(registry, "demo/web:1.0"))
    assert sizes(data)[0] - content_before >= record.content_bytes // 2  # the layers landed
    backend.delete_image_cache(record.id)
    content_after, state_after = sizes(data)
    assert content_after == content_before
    assert 0 <= state_after - state_before < STATE_GROWTH_LIMIT
    assert list(backend.blobs.digests()) == [] and list(backend.ctx.layers.digests()) == []
    assert backend.gc(grace=timedelta(0)).bytes_freed == 0


def test_a_layer_another_cache_holds_survives_the_delete(
    backend: LocalBackend, registry: Registry
) -> None:
    web = backend.create_image_cache(cache(registry, "demo/web:1.0", name="web"))
    worker = backend.create_image_cache(cache(registry, "demo/worker:1.0", name="worker"))
    shared = set(layers_of(registry, "demo/web:1.0")) & set(layers_of(registry, "demo/worker:1.0"))
    own = set(layers_of(registry, "demo/web:1.0")) - shared
    assert shared and own
    backend.delete_image_cache(web.id)
    assert all(backend.ctx.layers.has(d) for d in shared)
    assert not any(backend.ctx.layers.has(d) for d in own)
    # The survivor holds all its content still.
    image = registry.samples.images["demo/worker:1.0"]
    assert all(backend.ctx.holds(blob.digest) for blob in [image.config, *image.layers])
    assert backend.get_image_cache(worker.id).usable


def test_a_rebuild_frees_what_only_its_old_images_held(
    backend: LocalBackend, registry: Registry
) -> None:
    record = backend.create_image_cache(cache(registry, "demo/web:1.0"))
    old = set(layers_of(registry, "demo/web:1.0")) - set(layers_of(registry, "demo/worker:1.0"))
    backend.update_image_cache(record.id, cache(registry, "demo/worker:1.0"))
    assert not any(backend.ctx.layers.has(d) for d in old)
    assert all(backend.ctx.layers.has(d) for d in layers_of(registry, "demo/worker:1.0"))


def test_a_build_in_progress_keeps_what_it_will_hold(
    backend: LocalBackend, registry: Registry
) -> None:
    """A build claimed (its blobs held from the claim) while the only cache holding them is
    deleted: they stay, and go once the build has let go of them without holding them."""
    record = backend.create_image_cache(cache(registry, "demo/web:1.0"))
    layers = layers_of(registry, "demo/web:1.0")
    store = backend.store
    with store.transaction() as db:
        store.start_build(db, "imc-claimed", backend.ctx.host, 1, layers)
    backend.delete_image_cache(record.id)
    assert all(backend.ctx.layers.has(d) for d in layers)
    with store.transaction() as db:
        store.end_build(db, "imc-claimed")
    backend.ctx.release(layers)
    assert not any(backend.ctx.layers.has(d) for d in layers)


def test_a_release_waits_for_a_group_counting_on_the_layers(
    backend: LocalBackend, registry: Registry
) -> None:
    """A group between preparing its images and recording its containers' mounts holds the
    layers lock (shared): a delete commits at once, and its release waits for the group before
    it removes what nothing holds."""
    record = backend.create_image_cache(cache(registry, "demo/web:1.0"))
    layers = layers_of(registry, "demo/web:1.0")
    preparing, started = threading.Event(), threading.Event()

    def group_being_created() -> None:
        with backend.ctx.using_layers():
            preparing.set()
            started.wait(30)

    group = threading.Thread(target=group_being_created)
    group.start()
    assert preparing.wait(30)
    deleting = threading.Thread(target=backend.delete_image_cache, args=(record.id,))
    deleting.start()
    try:
        time.sleep(0.5)
        assert deleting.is_alive()
        assert backend.list_image_caches() == []  # the delete has committed
        assert all(backend.ctx.layers.has(d) for d in layers)
    finally:
        started.set()
        group.join(30)
        deleting.join(30)
    assert not any(backend.ctx.layers.has(d) for d in layers)


@pytest.fixture
def runtime_here() -> None:
    reason = host.unavailable()
    if reason:
        missing(f"containers cannot run here: {reason}")


def test_a_running_groups_layers_survive_the_delete_of_its_cache(
    runtime_here: None, backend: LocalBackend, registry: Registry
) -> None:
    image = registry.runnable.references(registry.host)["job_ok"]
    layers = [layer.digest for layer in registry.runnable.job_ok.layers]
    built = backend.create_image_cache(ImageCacheSpec(name="jobs", images=[image]))
    group = backend.create_container_group(
        ContainerGroupSpec(
            name="runs-on",
            cache="auto",
            restart_policy="Always",
            containers=[{"name": "main", "image": image, "command": ["sleep", "600"]}],
        )
    )
    try:
        assert group.cache_id == built.id
        backend.delete_image_cache(built.id)
        assert all(backend.ctx.layers.has(d) for d in layers)
        seen = backend.get_container_group(group.id)
        assert seen.status == GroupStatus.RUNNING, seen.status_reason
    finally:
        backend.delete_container_group(group.id)
    # The group was the last to hold them.
    assert not any(backend.ctx.layers.has(d) for d in layers)


def sleeper(image: str, name: str) -> ContainerGroupSpec:
    """A group that pulls ``image`` without a cache and keeps running."""
    return ContainerGroupSpec(
        name=name,
        cache="none",
        restart_policy="Always",
        containers=[{"name": "main", "image": image, "command": ["sleep", "600"]}],
    )


def test_deleting_the_last_group_that_pulled_an_image_frees_its_layers(
    runtime_here: None, backend: LocalBackend, registry: Registry
) -> None:
    """Groups without a cache pull and unpack their layers as a build does: the last one's
    delete removes them (the image config, a few KiB, is left to gc), measured with du."""
    image = registry.runnable.references(registry.host)["job_ok"]
    layers = [layer.digest for layer in registry.runnable.job_ok.layers]
    layers_dir = backend.ctx.layers.root
    before = du(layers_dir)
    first = backend.create_container_group(sleeper(image, "first"))
    second = backend.create_container_group(sleeper(image, "second"))
    try:
        assert all(backend.ctx.layers.has(d) for d in layers)
        assert du(layers_dir) > before
        backend.delete_container_group(first.id)
        assert all(backend.ctx.layers.has(d) for d in layers)  # the second runs on them
        seen = backend.get_container_group(second.id)
        assert seen.status == GroupStatus.RUNNING, seen.status_reason
    finally:
        backend.delete_container_group(second.id)
    assert not any(backend.ctx.layers.has(d) for d in layers)
    assert du(layers_dir) == before
