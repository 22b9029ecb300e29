from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from eci_imagecache.engine.matcher import CacheIndex, linear_match
from eci_imagecache.engine.models import CacheStatus, SnapshotKind
from eci_imagecache.engine.refs import parse_image_ref

from .helpers import record


def refs(*texts: str):
    return [parse_image_ref(t) for t in texts]


def ranking(records, images, needed=30, region="local"):
    return [c.cache_id for c in CacheIndex(records).match(refs(*images), region, needed).ranking]


def test_exact_version_beats_same_repository_beats_nothing() -> None:
    caches = [
        record("other-version", ["nginx:1.24"]),
        record("exact", ["nginx:1.25"]),
        record("unrelated", ["redis"]),
    ]
    result = CacheIndex(caches).match(refs("nginx:1.25"), "local", 30)
    assert [c.cache_id for c in result.ranking] == ["exact", "other-version"]
    assert result.chosen.degree.label == "exact"
    assert result.ranking[1].degree.label == "repository"
    assert result.chosen.reason.startswith("1/1 images exact")


def test_digest_match_is_exact() -> None:
    digest = "sha256:" + "1" * 64
    caches = [record("by-digest", [f"app@{digest}"]), record("by-tag", ["app:v2"])]
    assert ranking(caches, [f"app:v1@{digest}"]) == ["by-digest", "by-tag"]


def test_a_pinned_digest_is_not_matched_exactly_by_a_tag() -> None:
    digest = "sha256:" + "2" * 64
    caches = [record("tag-only", ["app:v1"]), record("pinned", [f"app:v1@{digest}"])]
    result = CacheIndex(caches).match(refs(f"app:v1@{digest}"), "local", 30)
    assert [(c.cache_id, c.degree.label) for c in result.ranking] == [
        ("pinned", "exact"),
        ("tag-only", "repository"),
    ]
    # Asking by tag, a cache pinned to a digest under that tag is exact too.
    assert {
        c.degree.label for c in CacheIndex(caches).match(refs("app:v1"), "local", 30).ranking
    } == {"exact"}


def test_degree_beats_size_and_size_beats_age() -> None:
    caches = [
        # Degree first: more exact images win even when size and age are worse.
        record("two-exact", ["nginx:1", "redis:7"], size=10, created=timedelta(days=0)),
        record("one-exact-close-size", ["nginx:1", "redis:6"], size=30, created=timedelta(days=9)),
        # Same degree: the size closest to the storage (30 GiB) wins over a newer one.
        record("one-exact-far-size", ["nginx:1", "redis:6"], size=20, created=timedelta(days=10)),
        # Same degree and size: the newest wins.
        record("one-exact-close-older", ["nginx:1", "redis:6"], size=30, created=timedelta(days=1)),
    ]
    assert ranking(caches, ["nginx:1", "redis:7"]) == [
        "two-exact",
        "one-exact-close-size",
        "one-exact-close-older",
        "one-exact-far-size",
    ]


def test_same_repository_counts_after_exact() -> None:
    caches = [
        record("exact-plus-repo", ["nginx:1", "redis:6"]),
        record("exact-only", ["nginx:1"], size=30),
    ]
    assert ranking(caches, ["nginx:1", "redis:7"]) == ["exact-plus-repo", "exact-only"]


def test_filters_region_usability_and_fit() -> None:
    caches = [
        record("too-big", ["nginx"], size=31),
        record("elsewhere", ["nginx"], region="cn-hangzhou"),
        record("building", ["nginx"], status=CacheStatus.CREATING, snapshot=SnapshotKind.NONE),
        record("instant", ["nginx"], status=CacheStatus.CREATING, snapshot=SnapshotKind.LOCAL),
        record("failed", ["nginx"], status=CacheStatus.FAILED),
    ]
    result = CacheIndex(caches).match(refs("nginx"), "local", 30)
    assert [c.cache_id for c in result.ranking] == ["instant"]
    reasons = {r.cache_id: r.reason for r in result.rejected}
    assert reasons == {
        "too-big": "31 GiB does not fit 30 GiB of ephemeral storage",
        "elsewhere": "in region cn-hangzhou, not local",
        "building": "not usable (creating)",
        "failed": "not usable (failed)",
    }
    # Declaring more ephemeral storage lets the bigger cache fit, and it is the closest size.
    assert ranking(caches, ["nginx"], needed=40) == ["too-big", "instant"]


def test_index_follows_updates_and_removals() -> None:
    index = CacheIndex([record("a", ["nginx:1"]), record("b", ["nginx:1"], size=25)])
    assert index.match(refs("nginx:1"), "local", 30).chosen.cache_id == "b"
    index.remove("b")
    assert index.match(refs("nginx:1"), "local", 30).chosen.cache_id == "a"
    index.add(record("a", ["redis"]))
    assert index.match(refs("nginx:1"), "local", 30).chosen is None
    assert len(index) == 1


repos = st.sampled_from(["nginx", "redis", "team/app", "localhost:5000/x", "r.io/a/b"])
versions = st.sampled_from(["1", "2", "latest"])
image_text = st.builds(lambda r, v: f"{r}:{v}", repos, versions)


@settings(max_examples=60, deadline=None)
@given(
    caches=st.lists(
        st.tuples(
            st.lists(image_text, min_size=1, max_size=4),
            st.integers(10, 40),
            st.integers(0, 5),
            st.booleans(),
        ),
        max_size=12,
    ),
    group=st.lists(image_text, min_size=1, max_size=3),
    needed=st.integers(25, 40),
)
def test_index_ranks_exactly_like_a_linear_scan(caches, group, needed) -> None:
    records = [
        record(
            str(i),
            images,
            size=size,
            created=timedelta(days=age),
            status=CacheStatus.READY if ready else CacheStatus.FAILED,
        )
        for i, (images, size, age, ready) in enumerate(caches)
    ]
    indexed = CacheIndex(records).match(refs(*group), "local", needed)
    scanned = linear_match(records, refs(*group), "local", needed)
    assert indexed.ranking == scanned.ranking
