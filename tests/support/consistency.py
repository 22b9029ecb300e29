"""What a local store must look like when no operation is running, whatever happened before."""

from __future__ import annotations

from datetime import timedelta

from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.engine.models import CacheStatus


def assert_consistent(backend: LocalBackend) -> None:
    for cache in backend.list_image_caches():
        assert cache.status in (CacheStatus.READY, CacheStatus.FAILED), (
            f"{cache.id} left {cache.status.value} with no build running"
        )
        if cache.usable:
            assert backend.snapshots.read(cache.snapshot_id) is not None, cache.id
            with backend.store.read() as db:
                layers = backend.store.cache_layers(db, cache.id)
            assert layers and all(backend.ctx.holds(d, n) for d, n in layers.items()), cache.id
    with backend.store.read() as db:
        assert backend.store.builds(db) == []
    backend.gc(grace=timedelta(0))
    caches = backend.list_image_caches()
    assert sorted(backend.snapshots.ids()) == sorted(c.snapshot_id for c in caches if c.snapshot_id)
    assert [p.name for p in backend.snapshots.root.iterdir() if p.name.startswith(".")] == []
    groups = {g.id for g in backend.list_container_groups()}
    groups_dir = backend.groups_dir
    on_disk = {p.name for p in groups_dir.iterdir()} if groups_dir.exists() else set()
    assert on_disk == groups
    assert list(backend.blobs.tmp.iterdir()) == []
    assert list(backend.ctx.layers.tmp.iterdir()) == []
