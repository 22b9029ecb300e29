"""Building caches on the local backend from a real registry."""

import hashlib
import io
import tarfile
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from eci_imagecache.backends.base import BackendError, InvalidSpec, QuotaExceeded
from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.engine.models import (
    CacheStatus,
    ContainerGroupSpec,
    ImageCacheSpec,
    Quota,
    SnapshotKind,
)

from ..conftest import Registry


def assert_unpacked(directory: Path, blob: bytes) -> None:
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tar:
        files = [member for member in tar.getmembers() if member.isfile()]
        assert files
        for member in files:
            expected = tar.extractfile(member).read()  # type: ignore[union-attr]
            assert (directory / member.name).read_bytes() == expected, member.name


def tar_file_bytes(blob: bytes) -> int:
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tar:
        return sum(member.size for member in tar.getmembers() if member.isfile())


def spec(registry: Registry, *names: str, **kwargs: object) -> ImageCacheSpec:
    return ImageCacheSpec(
        name=kwargs.pop("name", "cache"), images=[registry.ref(n) for n in names], **kwargs
    )


def test_build_pulls_every_blob_and_verifies_it(backend: LocalBackend, registry: Registry) -> None:
    record = backend.create_image_cache(spec(registry, "demo/web:1.0", "demo/worker:1.0"))
    assert record.status == CacheStatus.READY
    assert record.snapshot == SnapshotKind.STANDARD and record.usable
    web, worker = (
        registry.samples.images["demo/web:1.0"],
        registry.samples.images["demo/worker:1.0"],
    )
    expected = {b.digest: b for img in (web, worker) for b in [img.config, *img.layers]}
    assert record.layer_count == len(expected) == 6  # two shared base layers stored once
    assert record.content_bytes == record.fetched_bytes == sum(b.size for b in expected.values())
    for image in (web, worker):
        on_disk = backend.blobs.path(image.config.digest).read_bytes()
        assert "sha256:" + hashlib.sha256(on_disk).hexdigest() == image.config.digest
        for layer in image.layers:
            # Each layer is kept unpacked only: every file the registry's blob holds (read by
            # Python's tarfile) is in its directory with the same bytes.
            assert not backend.blobs.has(layer.digest)
            assert_unpacked(backend.ctx.layers.path(layer.digest), layer.data)
    reasons = [e.reason for e in backend.events(record.id)]
    assert reasons == ["Created", "Building", "Unpacked", "Ready"]


def test_multi_arch_index_selects_linux_amd64(backend: LocalBackend, registry: Registry) -> None:
    record = backend.create_image_cache(spec(registry, "demo/multi:1.0"))
    snapshot = backend.snapshots.read(record.snapshot_id)
    amd64 = registry.samples.images["demo/multi:1.0"]
    assert snapshot.images[0].manifest_digest == amd64.manifest_digest


def test_layer_reuse_fetches_only_new_layers(make_backend, registry: Registry, tmp_path) -> None:
    worker = registry.samples.images["demo/worker:1.0"]
    new_bytes = worker.config.size + worker.layers[-1].size  # all but the shared base layers
    for reuse, expected in ((True, new_bytes), (False, worker.content_bytes)):
        backend = make_backend(data_dir=tmp_path / f"reuse-{reuse}")
        backend.create_image_cache(spec(registry, "demo/web:1.0", name="first"))
        second = backend.create_image_cache(
            spec(registry, "demo/worker:1.0", name="second", layer_reuse=reuse)
        )
        assert second.fetched_bytes == expected
        assert second.fetched_bytes + second.reused_bytes == worker.content_bytes
        assert "reuse 2" in second.plan if reuse else "reuse 0" in second.plan


def test_instant_cache_is_usable_before_the_standard_snapshot(
    make_backend, registry: Registry
) -> None:
    seen = {}

    def on_phase(phase, record) -> None:
        seen[phase] = record
        if phase == "local-snapshot":  # a group created now already matches it
            group = ContainerGroupSpec(
                name="early",
                cache="auto",
                containers=[{"name": "web", "image": registry.ref("demo/web:1.0")}],
            )
            seen["match"] = backend.match(group).chosen

    backend = make_backend(on_phase=on_phase)
    record = backend.create_image_cache(spec(registry, "demo/web:1.0", instant=True))
    local = seen["local-snapshot"]
    assert (local.status, local.snapshot, local.usable) == (
        CacheStatus.CREATING,
        SnapshotKind.LOCAL,
        True,
    )
    assert seen["match"].cache_id == record.id
    assert (record.status, record.snapshot) == (CacheStatus.READY, SnapshotKind.STANDARD)
    messages = [e.message for e in backend.events(record.id)]
    assert "instant cache usable from a local snapshot" in messages
    assert messages[-1].endswith("local snapshot released")


def test_content_larger_than_the_size_fails_before_anything_is_made(
    backend: LocalBackend, registry: Registry
) -> None:
    # The sample layers are small, so shrink the GiB to make the check bite.
    import eci_imagecache.engine.planner as planner

    original = planner.GIB
    planner.GIB = 1024
    try:
        with pytest.raises(InvalidSpec, match=r"size_gib: the images need .* more than"):
            backend.create_image_cache(spec(registry, "demo/web:1.0", size_gib=1))
    finally:
        planner.GIB = original
    assert backend.list_image_caches() == []


def test_quota_refuses_without_touching_anything(make_backend, registry: Registry) -> None:
    backend = make_backend(quota=Quota(max_manual=2))
    first = backend.create_image_cache(spec(registry, "demo/web:1.0", name="one"))
    second = backend.create_image_cache(spec(registry, "demo/web:1.0", name="two"))
    with pytest.raises(QuotaExceeded, match="quota of 2 manual image caches reached"):
        backend.create_image_cache(spec(registry, "demo/web:1.0", name="three"))
    assert [c.id for c in backend.list_image_caches()] == sorted([first.id, second.id])


def test_quota_evicts_the_least_recently_used_lru_cache(make_backend, registry, clock) -> None:
    backend = make_backend(quota=Quota(max_manual=2))
    old = backend.create_image_cache(spec(registry, "demo/web:1.0", name="old", eviction="LRU"))
    clock.advance(hours=1)
    kept = backend.create_image_cache(spec(registry, "demo/web:1.0", name="pinned"))
    clock.advance(hours=1)
    new = backend.create_image_cache(spec(registry, "demo/web:1.0", name="new"))
    assert {c.id for c in backend.list_image_caches()} == {kept.id, new.id}
    assert f"evicted old ({old.id}, LRU)" in backend.events(new.id)[0].message


def test_the_eviction_is_told_by_the_evicted_cache_after_its_evicter_goes(
    make_backend, registry, clock
) -> None:
    backend = make_backend(quota=Quota(max_manual=1))
    first = backend.create_image_cache(spec(registry, "demo/web:1.0", name="aa", eviction="LRU"))
    clock.advance(hours=1)
    second = backend.create_image_cache(spec(registry, "demo/web:1.0", name="bb", eviction="LRU"))
    clock.advance(hours=1)
    backend.create_image_cache(spec(registry, "demo/web:1.0", name="cc"))
    for gone, evicter in ((first, "bb"), (second, "cc")):
        [event] = backend.events(gone.id)
        assert event.reason == "Evicted" and f"image cache {evicter}" in event.message


def test_a_cache_a_container_group_uses_is_never_evicted(make_backend, registry, clock) -> None:
    from eci_imagecache.engine.models import ContainerGroupSpec

    backend = make_backend(quota=Quota(max_manual=2))
    used = backend.create_image_cache(spec(registry, "demo/web:1.0", name="used", eviction="LRU"))
    group = backend.create_container_group(
        ContainerGroupSpec(
            name="group",
            cache="explicit",
            cache_id=used.id,
            containers=[{"name": "c", "image": registry.ref("demo/web:1.0")}],
        )
    )
    clock.advance(days=30)  # least recently used by far
    idle = backend.create_image_cache(spec(registry, "demo/web:1.0", name="idle", eviction="LRU"))
    clock.advance(hours=1)
    backend.create_image_cache(spec(registry, "demo/web:1.0", name="new"))
    assert used.id in {c.id for c in backend.list_image_caches()}
    assert idle.id not in {c.id for c in backend.list_image_caches()}
    with pytest.raises(QuotaExceeded, match="used by container groups: delete those groups"):
        backend.create_image_cache(spec(registry, "demo/web:1.0", name="more"))
    backend.delete_container_group(group.id)
    backend.create_image_cache(spec(registry, "demo/web:1.0", name="more"))
    assert used.id not in {c.id for c in backend.list_image_caches()}


def test_concurrent_creates_at_the_quota_boundary(make_backend, registry: Registry) -> None:
    backend = make_backend(quota=Quota(max_manual=5))
    created, refused, other = [], [], []

    def create(i: int) -> None:
        try:
            created.append(
                backend.create_image_cache(spec(registry, "demo/web:1.0", name=f"c{i}")).id
            )
        except QuotaExceeded as err:
            refused.append(str(err))
        except BackendError as err:
            other.append(str(err))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert other == []
    assert len(created) == 5 and len(refused) == 11
    assert sorted(created) == [c.id for c in backend.list_image_caches()]


def test_two_processes_share_one_store(make_backend, registry: Registry) -> None:
    # A second backend object stands for a second process: separate connections, same files.
    a, b = make_backend(quota=Quota(max_manual=3)), make_backend()
    one = a.create_image_cache(spec(registry, "demo/web:1.0", name="from-a"))
    two = b.create_image_cache(spec(registry, "demo/worker:1.0", name="from-b"))
    assert (
        {c.id for c in a.list_image_caches()}
        == {c.id for c in b.list_image_caches()}
        == {one.id, two.id}
    )
    assert b.quota.max_manual == 3


def test_retention_expires_and_changing_it_moves_the_expiry(backend, registry, clock) -> None:
    record = backend.create_image_cache(spec(registry, "demo/web:1.0", retention_days=1))
    backend.update_image_cache(record.id, spec(registry, "demo/web:1.0", retention_days=3))
    clock.advance(days=2)
    assert [c.id for c in backend.list_image_caches()] == [record.id]
    clock.advance(days=1)
    assert backend.list_image_caches() == []


def test_reads_hide_an_expired_cache_and_only_a_write_deletes_it(backend, registry, clock):
    from eci_imagecache.backends.base import NotFound

    record = backend.create_image_cache(spec(registry, "demo/web:1.0", retention_days=1))
    clock.advance(days=1)
    rows = "SELECT count(*) FROM caches"
    assert backend.list_image_caches() == []
    with pytest.raises(NotFound, match="retention of 1 days elapsed"):
        backend.get_image_cache(record.id)
    assert backend.store._connect().execute(rows).fetchone() == (1,)  # nothing written
    assert backend.gc().expired == [f"{record.id} (retention of 1 days elapsed)"]
    assert backend.store._connect().execute(rows).fetchone() == (0,)
    assert backend.events(record.id)[-1].reason == "Expired"


def test_update_of_settings_does_not_rebuild(backend, registry) -> None:
    record = backend.create_image_cache(spec(registry, "demo/web:1.0"))
    updated = backend.update_image_cache(
        record.id, spec(registry, "demo/web:1.0", eviction="LRU", name="renamed")
    )
    assert (updated.snapshot_id, updated.eviction.value, updated.name) == (
        record.snapshot_id,
        "LRU",
        "renamed",
    )


def test_update_of_images_rebuilds_with_reuse_of_held_layers(backend, registry) -> None:
    record = backend.create_image_cache(spec(registry, "demo/web:1.0", layer_reuse=True))
    rebuilt = backend.update_image_cache(
        record.id, spec(registry, "demo/web:1.1", layer_reuse=True)
    )
    assert rebuilt.snapshot_id != record.snapshot_id
    assert [str(i) for i in rebuilt.images] == [registry.ref("demo/web:1.1")]
    assert rebuilt.status == CacheStatus.READY
    assert "Rebuilding" in [e.reason for e in backend.events(record.id)]


def test_gc_removes_unreferenced_blobs(backend, registry) -> None:
    record = backend.create_image_cache(spec(registry, "demo/tools:1.0"))
    # What a delete whose process died between its commit and the removal of the files
    # leaves (a delete that ends removes them itself: see test_freeing.py).
    with backend.store.transaction() as db:
        backend.ctx.delete_cache(db, record.id, release=False)
    # Just fetched: kept by default, in case a build or group has not recorded them yet.
    assert backend.gc().blobs_removed == backend.gc().layers_removed == 0
    preview = backend.gc(dry_run=True, grace=timedelta(0))
    # The config is a blob, the layers are unpacked directories.
    assert (preview.blobs_removed, preview.layers_removed) == (1, record.layer_count - 1)
    assert preview.dry_run
    image = registry.samples.images["demo/tools:1.0"]
    unpacked = sum(tar_file_bytes(layer.data) for layer in image.layers)
    assert backend.gc(grace=timedelta(0)).bytes_freed == image.config.size + unpacked
    assert list(backend.blobs.digests()) == [] and list(backend.ctx.layers.digests()) == []


CREATE_MANY = """
import sys
from pathlib import Path
from eci_imagecache.backends.base import BackendError, QuotaExceeded
from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.engine.models import ImageCacheSpec
backend = LocalBackend(data_dir=Path(sys.argv[1]))
for i in range(4):
    try:
        print(backend.create_image_cache(
            ImageCacheSpec(name=f"{sys.argv[3]}-{i}", images=[sys.argv[2]])).id, flush=True)
    except QuotaExceeded:
        print("refused", flush=True)
    except BackendError as err:
        print(f"other: {err}", flush=True)
"""


def test_processes_racing_at_the_quota_boundary(make_backend, registry, tmp_path) -> None:
    import subprocess
    import sys

    data_dir = tmp_path / "shared"
    make_backend(data_dir=data_dir, quota=Quota(max_manual=5))
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                CREATE_MANY,
                str(data_dir),
                registry.ref("demo/web:1.0"),
                f"p{n}",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    lines = [line for child in children for line in child.communicate(timeout=120)[0].split()]
    created = [line for line in lines if line.startswith("imc-")]
    assert len(created) == 5 and lines.count("refused") == 7
    assert sorted(created) == [c.id for c in make_backend(data_dir=data_dir).list_image_caches()]
