"""The backend contract: the same behaviour from the local backend and from Alibaba Cloud's API
(as the emulator serves it to the official SDK)."""

import pytest

from eci_imagecache.backends.base import BackendError, NotFound
from eci_imagecache.engine.models import (
    CacheKind,
    CacheStatus,
    ContainerGroupSpec,
    GroupStatus,
    ImageCacheSpec,
    Quota,
)
from eci_imagecache.runtime import host

from ..conftest import Registry, missing
from .conftest import Harness


def cache(registry: Registry, *names: str, **kwargs) -> ImageCacheSpec:
    return ImageCacheSpec(
        name=kwargs.pop("name", "cache"), images=[registry.ref(n) for n in names], **kwargs
    )


def group(registry: Registry, *names: str, **kwargs) -> ContainerGroupSpec:
    return ContainerGroupSpec(
        name=kwargs.pop("name", "group"),
        **kwargs,
        containers=[{"name": f"c{i}", "image": registry.ref(n)} for i, n in enumerate(names)],
    )


def test_create_describe_delete(harness: Harness, registry: Registry) -> None:
    b = harness.backend
    made = b.create_image_cache(
        cache(
            registry,
            "demo/web:1.0",
            "demo/worker:1.0",
            name="web",
            eviction="LRU",
            retention_days=5,
        )
    )
    assert made.status == CacheStatus.READY and made.usable and made.snapshot_id
    got = b.get_image_cache(made.id)
    assert (got.name, got.size_gib, got.eviction.value, got.retention_days) == ("web", 20, "LRU", 5)
    assert [str(i) for i in got.images] == sorted(
        [registry.ref("demo/web:1.0"), registry.ref("demo/worker:1.0")]
    )
    assert [c.id for c in b.list_image_caches()] == [made.id]
    assert [e.reason for e in b.events(made.id)][-1] == "Ready"
    b.delete_image_cache(made.id)
    with pytest.raises(NotFound):
        b.get_image_cache(made.id)


def test_update_in_place_and_rebuild(harness: Harness, registry: Registry) -> None:
    b = harness.backend
    made = b.create_image_cache(cache(registry, "demo/web:1.0"))
    updated = b.update_image_cache(
        made.id, cache(registry, "demo/web:1.0", eviction="LRU", retention_days=9)
    )
    assert (updated.id, updated.snapshot_id) == (made.id, made.snapshot_id)
    assert (updated.eviction.value, updated.retention_days) == ("LRU", 9)
    rebuilt = b.update_image_cache(
        made.id, cache(registry, "demo/web:1.1", eviction="LRU", retention_days=9)
    )
    assert rebuilt.id == made.id and rebuilt.status == CacheStatus.READY
    assert rebuilt.snapshot_id != made.snapshot_id
    assert [str(i) for i in rebuilt.images] == [registry.ref("demo/web:1.1")]


def test_quota_refusal_and_lru_eviction(harness: Harness, registry: Registry) -> None:
    b = harness.backend
    harness.local.set_quota(Quota(max_manual=1, max_auto=5))
    pinned = b.create_image_cache(cache(registry, "demo/web:1.0", name="pinned"))
    with pytest.raises(BackendError, match="quota of 1 manual image caches reached"):
        b.create_image_cache(cache(registry, "demo/web:1.0", name="refused"))
    assert [c.id for c in b.list_image_caches()] == [pinned.id]
    b.update_image_cache(pinned.id, cache(registry, "demo/web:1.0", name="pinned", eviction="LRU"))
    newer = b.create_image_cache(cache(registry, "demo/web:1.0", name="newer"))
    assert [c.id for c in b.list_image_caches()] == [newer.id]
    usage = b.usage()
    assert (usage.quota.max_manual, usage.manual, usage.auto) == (1, 1, 0)


def test_retention_expires(harness: Harness, registry: Registry) -> None:
    b = harness.backend
    made = b.create_image_cache(cache(registry, "demo/web:1.0", retention_days=2))
    harness.clock.advance(days=2, seconds=-1)
    assert [c.id for c in b.list_image_caches()] == [made.id]
    harness.clock.advance(seconds=1)
    assert b.list_image_caches() == []
    with pytest.raises(NotFound):
        b.get_image_cache(made.id)


def test_matching_picks_the_exact_cache(harness: Harness, registry: Registry) -> None:
    b = harness.backend
    b.create_image_cache(cache(registry, "demo/web:1.0", name="other-version"))
    exact = b.create_image_cache(cache(registry, "demo/web:1.1", name="exact"))
    spec = group(registry, "demo/web:1.1", cache="auto")
    assert b.match(spec).chosen.cache_id == exact.id
    made = b.create_container_group(spec)
    assert (made.cache_id, made.match_degree) == (exact.id, "exact")
    assert "1/1 images exact" in made.match_reason
    assert b.get_image_cache(exact.id).last_used_at is not None
    b.delete_container_group(made.id)
    with pytest.raises(NotFound):
        b.get_container_group(made.id)


def test_explicit_cache_and_missing_cache(harness: Harness, registry: Registry) -> None:
    b = harness.backend
    made = b.create_image_cache(cache(registry, "demo/web:1.0"))
    used = b.create_container_group(
        group(registry, "demo/web:1.0", cache="explicit", cache_id=made.id)
    )
    assert used.cache_id == made.id
    with pytest.raises(BackendError):
        b.create_container_group(
            group(registry, "demo/web:1.0", cache="explicit", cache_id="imc-doesnotexist")
        )


def test_miss_creates_an_automatic_cache(harness: Harness, registry: Registry) -> None:
    b = harness.backend
    made = b.create_container_group(group(registry, "demo/tools:1.0", name="needs-tools"))
    assert made.cache_id is None and made.auto_created_cache_id
    auto = b.get_image_cache(made.auto_created_cache_id)
    assert auto.name == f"auto-create-for-{made.id}" and auto.kind == CacheKind.AUTO
    assert auto.size_gib == 30
    again = b.create_container_group(group(registry, "demo/tools:1.0", name="again", cache="auto"))
    assert again.cache_id == auto.id


def test_unknown_image_is_a_clear_error(harness: Harness, registry: Registry) -> None:
    with pytest.raises(BackendError, match=r"demo/web:9\.9: not found"):
        harness.backend.create_image_cache(cache(registry, "demo/web:9.9"))
    assert harness.backend.list_image_caches() == []


def test_eviction_is_cleared_in_place(harness: Harness, registry: Registry) -> None:
    b = harness.backend
    made = b.create_image_cache(cache(registry, "demo/web:1.0", eviction="LRU"))
    cleared = b.update_image_cache(made.id, cache(registry, "demo/web:1.0", eviction=""))
    assert cleared.eviction.value == "" and cleared.snapshot_id == made.snapshot_id
    assert b.get_image_cache(made.id).eviction.value == ""


def test_a_group_reports_the_cache_it_used(harness: Harness, registry: Registry) -> None:
    b = harness.backend
    made = b.create_image_cache(cache(registry, "demo/web:1.0"))
    used = b.create_container_group(
        group(registry, "demo/web:1.0", cache="explicit", cache_id=made.id)
    )
    again = b.get_container_group(used.id)
    assert again.cache_id == made.id
    assert [g.cache_id for g in b.list_container_groups()] == [made.id]


def test_a_group_that_cannot_start_says_why_and_has_no_address(
    harness: Harness, registry: Registry
) -> None:
    """The command is not in the image: the group fails before any container starts. The
    local backend says why; the cloud tells it with a Warning event, which the alicloud backend
    reads."""
    if host.unavailable():
        missing(f"containers cannot run here: {host.unavailable()}")
    b = harness.backend
    made = b.create_container_group(
        ContainerGroupSpec(
            name="idle",
            cache="none",
            containers=[
                {"name": "c0", "image": registry.ref("demo/web:1.0"), "command": ["/bin/nothing"]}
            ],
        )
    )
    got = b.get_container_group(made.id)
    truth = harness.local.get_container_group(made.id)  # where it really ran
    assert got.status == truth.status == GroupStatus.FAILED
    assert "is not in the image" in truth.status_reason
    assert truth.status_reason in got.status_reason
    assert got.address is None
