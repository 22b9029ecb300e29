import random
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from eci_imagecache.engine.matcher import CacheIndex, MatchResult, linear_match
from eci_imagecache.engine.models import CacheRecord, CacheStatus, SnapshotKind
from eci_imagecache.engine.refs import ImageRef, parse_image_ref

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


# The oracle: DESIGN.md "Matching" written out plainly, sharing no code with the matcher.


def holds(cache: CacheRecord, wanted: ImageRef) -> str:
    """'exact', 'repository' or '' for one image of the group against one cache."""
    same_repository = [
        held
        for held in cache.images
        if held.registry == wanted.registry and held.repository == wanted.repository
    ]
    if not same_repository:
        return ""
    # A pinned digest is matched exactly only by that digest; otherwise by the tag.
    if wanted.digest is not None:
        exact = any(held.digest == wanted.digest for held in same_repository)
    else:
        exact = any(held.tag == wanted.tag for held in same_repository)
    return "exact" if exact else "repository"


def degree(cache: CacheRecord, group: list[ImageRef]) -> tuple[int, int]:
    found = [holds(cache, wanted) for wanted in set(group)]
    return found.count("exact"), found.count("repository")


def fits(cache: CacheRecord, region: str, needed: int) -> bool:
    return cache.region == region and cache.usable and cache.size_gib <= needed


def expected(caches: list[CacheRecord], group: list[ImageRef], region: str, needed: int):
    """(ranking of (id, exact, same), ids of caches sharing a repository but unusable)."""
    scored = [(cache, *degree(cache, group)) for cache in caches]
    qualified = [
        (cache, exact, same)
        for cache, exact, same in scored
        if fits(cache, region, needed) and exact + same > 0
    ]
    qualified.sort(
        key=lambda q: (
            -q[1],  # more images in the exact version
            -q[2],  # then more images in the same repository
            needed - q[0].size_gib,  # then the size closest to the storage
            -q[0].created_at.timestamp(),  # then the newest
            q[0].id,  # then a stable order
        )
    )
    unusable = sorted(
        cache.id
        for cache, exact, same in scored
        if exact + same > 0 and not fits(cache, region, needed)
    )
    return [(c.id, exact, same) for c, exact, same in qualified], unusable


def ranked(result: MatchResult) -> list[tuple[str, int, int]]:
    return [(c.cache_id, c.degree.exact, c.degree.same_repository) for c in result.ranking]


def assert_matches_rules(index, caches, group, region, needed, limit) -> None:
    ranking, unusable = expected(caches, group, region, needed)
    result = index.match(group, region, needed, limit=limit)
    assert ranked(result) == ranking[:limit]
    assert result.candidates == len(ranking)
    assert [r.cache_id for r in result.rejected] == unusable[:limit]
    assert all(c.degree.total == len(set(group)) for c in result.ranking)


DIGESTS = ["sha256:" + c * 64 for c in "ab"]
image_text = st.builds(
    lambda repository, tag, digest: repository + (f":{tag}" if tag else "") + digest,
    st.sampled_from(["nginx", "redis", "team/app", "localhost:5000/x"]),
    st.sampled_from(["1", "2", None]),
    st.sampled_from(["", *(f"@{d}" for d in DIGESTS)]),
)
states = st.sampled_from(
    [
        (CacheStatus.READY, SnapshotKind.STANDARD),
        (CacheStatus.UPDATING, SnapshotKind.STANDARD),
        (CacheStatus.CREATING, SnapshotKind.LOCAL),
        (CacheStatus.CREATING, SnapshotKind.NONE),
        (CacheStatus.FAILED, SnapshotKind.NONE),
    ]
)
cache_rows = st.lists(
    st.tuples(
        st.lists(image_text, min_size=1, max_size=4),
        st.sampled_from([20, 25, 30, 40]),  # few sizes and ages: ties are the common case
        st.integers(0, 3),
        states,
        st.sampled_from(["local", "local", "cn-hangzhou"]),
    ),
    max_size=25,
)


def build(rows, prefix: str = "c") -> list[CacheRecord]:
    return [
        record(
            f"{prefix}{i:02d}",
            images,
            size=size,
            created=timedelta(days=age),
            status=status,
            snapshot=snapshot,
            region=region,
        )
        for i, (images, size, age, (status, snapshot), region) in enumerate(rows)
    ]


@settings(max_examples=300, deadline=None)
@given(
    rows=cache_rows,
    group=st.lists(image_text, min_size=1, max_size=4),
    needed=st.sampled_from([20, 25, 30, 35, 40]),
    limit=st.integers(1, 6),
)
def test_index_ranks_as_the_rules_say(rows, group, needed, limit) -> None:
    caches = build(rows)
    assert_matches_rules(CacheIndex(caches), caches, refs(*group), "local", needed, limit)


@settings(max_examples=100, deadline=None)
@given(
    rows=cache_rows,
    changed=cache_rows,
    removed=st.sets(st.integers(0, 24)),
    group=st.lists(image_text, min_size=1, max_size=4),
)
def test_an_index_kept_up_to_date_ranks_as_the_rules_say(rows, changed, removed, group) -> None:
    caches = {c.id: c for c in build(rows)}
    index = CacheIndex(caches.values())
    for cache in build(changed):  # replaces caches of the same id, adds the others
        index.add(cache)
        caches[cache.id] = cache
    for i in removed:
        index.remove(f"c{i:02d}")
        caches.pop(f"c{i:02d}", None)
    assert len(index) == len(caches)
    assert_matches_rules(index, list(caches.values()), refs(*group), "local", 30, 5)


def test_index_ranks_as_the_rules_say_across_many_caches() -> None:
    """Long ranked lists, where a query stops reading early, and every shape of group."""
    rng = random.Random(13)
    pool = [f"r{rng.randrange(40)}/app:v{rng.randrange(3)}" for _ in range(400)]
    pool += [f"r{i}/app@{DIGESTS[i % 2]}" for i in range(10)]
    caches = [
        record(
            f"c{i:04d}",
            rng.sample(pool, rng.randint(1, 8)),
            size=rng.choice([20, 25, 30, 40]),
            created=timedelta(hours=rng.randrange(50)),
            status=rng.choice([CacheStatus.READY] * 5 + [CacheStatus.FAILED]),
            region=rng.choice(["local"] * 5 + ["elsewhere"]),
        )
        for i in range(2000)
    ]
    index = CacheIndex(caches)
    for _ in range(60):
        group = refs(*rng.sample(pool, rng.randint(1, 5)))
        needed = rng.choice([25, 30, 40])
        assert_matches_rules(index, caches, group, "local", needed, rng.choice([1, 3, 10]))


@settings(max_examples=100, deadline=None)
@given(rows=cache_rows, group=st.lists(image_text, min_size=1, max_size=4))
def test_linear_scan_ranks_as_the_rules_say(rows, group) -> None:
    caches = build(rows)
    ranking, _ = expected(caches, refs(*group), "local", 30)
    result = linear_match(caches, refs(*group), "local", 30, limit=5)
    assert ranked(result) == ranking[:5]
    assert result.candidates == len(ranking)
    qualified = {cache_id for cache_id, _, _ in ranking}
    assert [r.cache_id for r in result.rejected] == sorted(
        c.id for c in caches if c.id not in qualified
    )[:5]
