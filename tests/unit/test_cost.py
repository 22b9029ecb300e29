"""Cost estimates against figures computed by hand from the vendor's unit prices."""

import pytest

from eci_imagecache.engine.cost import (
    DEFAULT_PRICES,
    PriceError,
    estimate_cache,
    estimate_group,
    money,
    prices_from,
    storage_needed_gib,
)
from eci_imagecache.engine.models import GIB, CacheKind

# Twice the vendor's measured image (386.26 MB in 50 s): 100 s of fetching at the default rate.
HUNDRED_SECONDS = 2 * 386_260_000


def test_a_manual_build_costs_the_instance_and_its_disk_for_the_fetch_time() -> None:
    cost = estimate_cache(HUNDRED_SECONDS, 5 * GIB, size_gib=20)
    # By hand: 100 s x (2 x 0.0000077 + 4 x 0.00000096) USD/s = 0.001924 USD for the instance,
    # 20 GiB x 0.0003188 USD/GiB-h x 100/3600 h = 0.000177111 USD for the ESSD PL1 disk.
    assert cost.build_seconds == pytest.approx(100)
    assert cost.build == pytest.approx(0.001924 + 0.000177111, rel=1e-6)
    # 5 GiB of snapshot at 0.0173 USD/GiB-month.
    assert cost.snapshot_gib == pytest.approx(5)
    assert cost.monthly == pytest.approx(0.0865)


def test_the_snapshot_is_billed_on_its_content_not_on_the_declared_size() -> None:
    small = estimate_cache(0, GIB // 2, size_gib=20)
    large_disk = estimate_cache(0, GIB // 2, size_gib=200)
    assert small.monthly == large_disk.monthly == pytest.approx(0.5 * 0.0173)


def test_layers_reused_from_other_caches_make_the_build_cheaper() -> None:
    without_reuse = estimate_cache(HUNDRED_SECONDS, HUNDRED_SECONDS, size_gib=20)
    with_reuse = estimate_cache(HUNDRED_SECONDS // 4, HUNDRED_SECONDS, size_gib=20)
    assert with_reuse.build == pytest.approx(without_reuse.build / 4)
    assert with_reuse.monthly == without_reuse.monthly


def test_a_configured_overhead_is_billed_even_when_nothing_is_fetched() -> None:
    prices = prices_from({"buildOverheadSeconds": 60})
    cost = estimate_cache(0, 0, size_gib=20, prices=prices)
    # 60 s x (0.0000154 + 0.00000384 + 20 x 0.0003188 / 3600) USD/s
    assert cost.build == pytest.approx(60 * (0.0000154 + 0.00000384 + 20 * 0.0003188 / 3600))


def test_automatic_caches_are_free_to_create_and_keep() -> None:
    cost = estimate_cache(HUNDRED_SECONDS, 5 * GIB, size_gib=30, kind=CacheKind.AUTO)
    assert (cost.build, cost.monthly) == (0, 0)
    assert "free" in cost.summary()


def test_extra_ephemeral_storage_matches_the_vendors_own_example() -> None:
    # The vendor's temporary-storage billing example: 20 GiB extra in China (Hangzhou) at
    # USD 0.03188 per 100 GiB-hour costs 0.03188 / 100 x 20 = USD 0.006376 per hour.
    cost = estimate_group(20)
    assert cost.hourly == pytest.approx(0.006376)
    assert cost.monthly == pytest.approx(0.006376 * 730)
    assert estimate_group(0).monthly == 0


def test_a_cache_over_30_gib_needs_the_difference_as_extra_storage() -> None:
    assert storage_needed_gib(20) == 0
    assert storage_needed_gib(30) == 0
    assert storage_needed_gib(50) == 20


def test_overrides_replace_single_prices_in_either_key_style() -> None:
    camel = prices_from({"snapshotGibMonth": 0.02, "region": "cn-shanghai"})
    snake = prices_from({"snapshot_gib_month": 0.02, "region": "cn-shanghai"})
    assert camel == snake
    assert camel.vcpu_per_second == DEFAULT_PRICES.vcpu_per_second
    assert estimate_cache(0, 5 * GIB, 20, camel).monthly == pytest.approx(0.1)
    assert prices_from(None) is DEFAULT_PRICES


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"snapshotGibMonth": -1}, "snapshotGibMonth"),
        ({"buildBytesPerSecond": 0}, "buildBytesPerSecond"),
        ({"vcpuPrice": 1}, "vcpuPrice"),
        ({"essdPl1GibHour": "cheap"}, "essdPl1GibHour"),
        ({"snapshotGibMonth": float("inf")}, "snapshotGibMonth"),
        ({"vcpuPerSecond": float("nan")}, "vcpuPerSecond"),
    ],
)
def test_bad_overrides_fail_naming_the_price(overrides: dict, named: str) -> None:
    with pytest.raises(PriceError, match=named):
        prices_from(overrides)


def test_every_summary_is_labelled_an_estimate() -> None:
    cache = estimate_cache(HUNDRED_SECONDS, 5 * GIB, size_gib=20)
    assert cache.summary().startswith("estimate: build USD 0.0021 once (~1 min 40 s")
    assert "snapshot USD 0.0865/month (5.00 GiB)" in cache.summary()
    assert cache.as_output()["label"] == "estimate"
    assert estimate_group(20).summary().startswith("estimate: 20 GiB of extra ephemeral storage")
    assert "cn-hangzhou" in cache.as_output()["prices"]


def test_money_keeps_cents_visible_for_small_amounts() -> None:
    assert money(0.0021011, "USD") == "USD 0.0021"
    assert money(4.65448, "USD") == "USD 4.65"
    assert money(0.00000018, "USD") == "USD <0.0001"
    assert money(0, "USD") == "USD 0.0000"


def test_a_date_read_from_yaml_names_the_table() -> None:
    import datetime

    prices = prices_from({"asOf": datetime.date(2026, 11, 1), "region": "cn-shanghai"})
    assert prices.source == "cn-shanghai list prices, 2026-11-01"


def test_the_label_names_the_prices_the_user_changed() -> None:
    changed = prices_from({"snapshotGibMonth": 0.02, "region": "cn-shanghai"})
    assert changed.source.endswith("; overridden: snapshotGibMonth")
    assert estimate_cache(0, GIB, 20, changed).prices == changed.source
    assert "overridden" not in DEFAULT_PRICES.source


def test_a_build_under_a_second_reads_as_such() -> None:
    assert "(<1 s of a 2 vCPU" in estimate_cache(1000, 1000, size_gib=20).summary()
