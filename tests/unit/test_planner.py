import pytest

from eci_imagecache.engine.models import GIB
from eci_imagecache.engine.planner import Layer, PlanError, ResolvedImage, plan_build


def image(name: str, *layers: tuple[str, int]) -> ResolvedImage:
    return ResolvedImage(
        reference=name,
        manifest_digest=f"sha256:m-{name}",
        config=Layer(digest=f"sha256:c-{name}", size=100),
        layers=[Layer(digest=d, size=s) for d, s in layers],
    )


BASE = ("sha256:base", 50 * 1024**2)
APP = image("app", BASE, ("sha256:app", 10 * 1024**2))
WORKER = image("worker", BASE, ("sha256:worker", 5 * 1024**2))


def test_shared_layers_within_a_cache_are_fetched_once() -> None:
    plan = plan_build([APP, WORKER], size_gib=1)
    assert sorted(layer.digest for layer in plan.fetch) == [
        "sha256:app",
        "sha256:base",
        "sha256:c-app",
        "sha256:c-worker",
        "sha256:worker",
    ]
    assert plan.reuse == []
    assert plan.fetch_bytes == (50 + 10 + 5) * 1024**2 + 200


def test_reuse_takes_layers_other_caches_hold_only_when_enabled() -> None:
    held = {"sha256:base", "sha256:unrelated"}
    with_reuse = plan_build([APP], size_gib=1, held_elsewhere=held, layer_reuse=True)
    assert [layer.digest for layer in with_reuse.reuse] == ["sha256:base"]
    assert with_reuse.fetch_bytes == 10 * 1024**2 + 100
    without = plan_build([APP], size_gib=1, held_elsewhere=held, layer_reuse=False)
    assert without.reuse == [] and without.fetch_bytes == with_reuse.content_bytes


def test_content_larger_than_the_cache_is_a_plan_error() -> None:
    huge = image("huge", ("sha256:big", 2 * GIB))
    with pytest.raises(PlanError, match=r"size_gib: .* more than the cache size of 1 GiB"):
        plan_build([huge], size_gib=1)
    assert plan_build([huge], size_gib=3).content_bytes == 2 * GIB + 100


def test_summary_says_what_is_fetched_and_reused() -> None:
    plan = plan_build([APP, WORKER], size_gib=20, held_elsewhere={"sha256:base"}, layer_reuse=True)
    assert plan.summary() == (
        "2 images, 5 blobs (65.0 MiB): fetch 4 (15.0 MiB), reuse 1 (50.0 MiB), fits in 20 GiB"
    )


def test_summary_of_one_image_reads_in_the_singular() -> None:
    plan = plan_build([image("lone", ("sha256:only", 1024**2))], size_gib=1)
    assert plan.summary().startswith("1 image, 2 blobs (1.0 MiB): ")
