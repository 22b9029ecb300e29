from datetime import timedelta

import pytest

from eci_imagecache.engine.lifecycle import (
    QuotaReached,
    auto_cache_name,
    auto_cache_size_gib,
    due_for_deletion,
    expires_at,
    lru_order,
    make_room,
)
from eci_imagecache.engine.models import CacheKind, EvictionStrategy, Quota

from .helpers import T0, record

AUTO = CacheKind.AUTO
LRU = EvictionStrategy.LRU


def test_manual_cache_is_permanent_without_retention() -> None:
    cache = record("m", ["nginx"])
    assert expires_at(cache) is None
    assert due_for_deletion([cache], T0 + timedelta(days=10_000)) == []


def test_retention_expires_at_creation_plus_days() -> None:
    cache = record("m", ["nginx"], retention_days=3)
    assert expires_at(cache) == T0 + timedelta(days=3)
    assert due_for_deletion([cache], T0 + timedelta(days=3) - timedelta(seconds=1)) == []
    [due] = due_for_deletion([cache], T0 + timedelta(days=3))
    assert due.reason == "retention of 3 days elapsed"


def test_changing_retention_moves_the_expiry() -> None:
    cache = record("m", ["nginx"], retention_days=3)
    longer = cache.model_copy(update={"retention_days": 10})
    assert expires_at(longer) == T0 + timedelta(days=10)


def test_auto_cache_never_used_goes_after_7_days() -> None:
    cache = record("a", ["nginx"], kind=AUTO)
    assert due_for_deletion([cache], T0 + timedelta(days=6, hours=23)) == []
    [due] = due_for_deletion([cache], T0 + timedelta(days=7))
    assert due.reason == "automatic cache never used for 7 days"


def test_auto_cache_used_goes_after_30_idle_days() -> None:
    cache = record("a", ["nginx"], kind=AUTO, last_used=timedelta(days=6))
    assert due_for_deletion([cache], T0 + timedelta(days=35)) == []
    [due] = due_for_deletion([cache], T0 + timedelta(days=36))
    assert due.reason == "automatic cache unused for 30 days"


def test_lru_order_uses_last_use_then_creation() -> None:
    caches = [
        record("used-late", ["a"], last_used=timedelta(days=9)),
        record("never-used-new", ["a"], created=timedelta(days=5)),
        record("used-early", ["a"], created=timedelta(days=1), last_used=timedelta(days=2)),
    ]
    assert [c.id for c in lru_order(caches)] == ["used-early", "never-used-new", "used-late"]


def test_room_at_quota_evicts_least_recently_used_lru_cache_of_the_same_kind() -> None:
    caches = [
        record("pinned-oldest", ["a"]),
        record("lru-old", ["a"], eviction=LRU, created=timedelta(days=1)),
        record("lru-new", ["a"], eviction=LRU, created=timedelta(days=2)),
        record("auto", ["a"], kind=AUTO),
    ]
    quota = Quota(max_manual=3, max_auto=5)
    assert [c.id for c in make_room(caches, CacheKind.MANUAL, quota)] == ["lru-old"]
    assert make_room(caches, AUTO, quota) == []


def test_quota_without_evictable_cache_refuses() -> None:
    caches = [record("a", ["a"]), record("b", ["a"])]
    with pytest.raises(QuotaReached, match="quota of 2 manual image caches reached"):
        make_room(caches, CacheKind.MANUAL, Quota(max_manual=2))


def test_auto_caches_are_always_evictable() -> None:
    caches = [
        record("a1", ["a"], kind=AUTO, last_used=timedelta(days=3)),
        record("a2", ["a"], kind=AUTO, last_used=timedelta(days=1)),
    ]
    assert [c.id for c in make_room(caches, AUTO, Quota(max_auto=2))] == ["a2"]


def test_auto_cache_naming_and_size() -> None:
    assert auto_cache_name("eci-123") == "auto-create-for-eci-123"
    assert auto_cache_size_gib(0) == 30
    assert auto_cache_size_gib(20) == 50


def test_a_cache_being_built_is_not_evicted() -> None:
    from eci_imagecache.engine.models import CacheStatus

    caches = [
        record("building", ["a"], eviction=LRU, status=CacheStatus.CREATING),
        record("ready", ["a"], eviction=LRU, created=timedelta(days=1)),
    ]
    assert [c.id for c in make_room(caches, CacheKind.MANUAL, Quota(max_manual=2))] == ["ready"]


def test_a_cache_named_by_a_container_group_is_not_evicted() -> None:
    caches = [
        record("used", ["a"], eviction=LRU),
        record("idle", ["a"], eviction=LRU, created=timedelta(days=1)),
    ]
    quota = Quota(max_manual=2)
    assert [c.id for c in make_room(caches, CacheKind.MANUAL, quota, in_use={"used"})] == ["idle"]
    with pytest.raises(QuotaReached, match=r"2 LRU cache\(s\) used by container groups: delete"):
        make_room(caches, CacheKind.MANUAL, quota, in_use={"used", "idle"})


def test_refusal_while_every_lru_cache_is_building_says_to_wait() -> None:
    from eci_imagecache.engine.models import CacheStatus

    caches = [record(f"b{i}", ["a"], eviction=LRU, status=CacheStatus.CREATING) for i in range(2)]
    with pytest.raises(QuotaReached) as info:
        make_room(caches, CacheKind.MANUAL, Quota(max_manual=2))
    message = str(info.value)
    assert "2 LRU cache(s) being built: retry once they are done" in message
    assert "set eviction to LRU" not in message  # every cache already has it
