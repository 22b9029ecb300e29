"""The local backend's match index follows the store by reading only what changed."""

from datetime import UTC, datetime, timedelta

import pytest

from eci_imagecache.engine.models import (
    CacheKind,
    CacheRecord,
    CacheStatus,
    ContainerGroupSpec,
    EvictionStrategy,
    SnapshotKind,
)
from eci_imagecache.engine.refs import parse_image_ref


def cache(cache_id: str, images: list[str], size: int = 20, **changes: object) -> CacheRecord:
    return CacheRecord(
        id=cache_id,
        name=f"cache-{cache_id}",
        kind=CacheKind.MANUAL,
        region="local",
        images=[parse_image_ref(i) for i in images],
        size_gib=size,
        status=CacheStatus.READY,
        snapshot=SnapshotKind.STANDARD,
        eviction=EvictionStrategy.NEVER,
        created_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=int(cache_id[-2:])),
    ).model_copy(update=changes)


def group(*images: str) -> ContainerGroupSpec:
    return ContainerGroupSpec(
        name="probe",
        cache="auto",
        containers=[{"name": f"c{i}", "image": image} for i, image in enumerate(images)],
    )


def ranking(backend, *images: str) -> list[tuple[str, str]]:
    result = backend.match(group(*images))
    return [(c.cache_id, c.degree.label) for c in result.ranking]


def test_changes_by_another_process_reach_the_index_without_a_full_read(
    make_backend, monkeypatch
) -> None:
    ours, theirs = make_backend(), make_backend()  # two backends on one store
    with theirs.store.transaction() as db:
        for i, images in enumerate([["nginx:1"], ["nginx:2", "redis:7"], ["redis:7"]]):
            theirs.store.put_cache(db, cache(f"imc-{i:02d}", images))
    assert ranking(ours, "nginx:1", "redis:7") == [
        ("imc-01", "partial"),  # one exact, one in another version
        ("imc-02", "partial"),  # one exact, newer than imc-00
        ("imc-00", "partial"),
    ]

    def full_read(db):  # the index is built once; after that only changes are read
        raise AssertionError("the match index read every cache again")

    monkeypatch.setattr(ours.store, "list_caches", full_read)
    with theirs.store.transaction() as db:
        theirs.store.delete_cache(db, "imc-00")
        theirs.store.put_cache(db, cache("imc-03", ["nginx:1", "redis:7"]))
        theirs.store.put_cache(db, cache("imc-02", ["redis:7"], status=CacheStatus.FAILED))
        theirs.store.put_cache(db, cache("imc-01", ["nginx:2", "redis:7"], size=40))
    fresh = make_backend()
    expected = [("imc-03", "exact")]
    assert ranking(ours, "nginx:1", "redis:7") == ranking(fresh, "nginx:1", "redis:7") == expected
    # A change matching does not see (progress, last use) leaves the version alone.
    with theirs.store.read() as db:
        version = theirs.store.caches_version(db)
    with theirs.store.transaction() as db:
        theirs.store.put_cache(db, cache("imc-03", ["nginx:1", "redis:7"], progress=50))
    with theirs.store.read() as db:
        assert theirs.store.caches_version(db) == version


@pytest.mark.parametrize("count", [3, 40])
def test_the_index_agrees_with_a_fresh_one_after_many_changes(make_backend, count) -> None:
    ours = make_backend()
    ranking(ours, "nginx:1")  # built now, then only caught up
    for i in range(count):
        with ours.store.transaction() as db:
            ours.store.put_cache(db, cache(f"imc-{i:02d}", [f"nginx:{i % 3}", "redis:7"]))
            if i % 4 == 3:
                ours.store.delete_cache(db, f"imc-{i - 2:02d}")
        assert ranking(ours, "nginx:1", "redis:7") == ranking(make_backend(), "nginx:1", "redis:7")
