"""Automatic matching: which cache a container group uses, and why.

1. Candidates are usable caches in the group's region whose size fits its ephemeral storage.
2. They rank by image match degree (exact version > same repository, other version > nothing),
   then by size closest to the storage the group has, then newest first.

:func:`linear_match` applies these rules to every cache, one by one: the plain statement of the
rules and the baseline of the benchmark. :class:`CacheIndex` gives the same answer without
looking at every candidate. It keeps, per region and repository, the usable caches already in
rank order (largest size first, since a cache never exceeds the storage it fits, then newest,
then id), and the same per version. A cache holding one of the group's repositories has a
degree fixed by whether it holds the asked version, so those caches come out of the sorted
lists in rank order and a query reads only as many as it returns. Caches holding several of the
group's repositories are few; they are scored one by one. Cost per query: the size of those
overlaps plus ``limit``, not the number of caches.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections import Counter, defaultdict
from collections.abc import Callable, Container, Iterable, Iterator
from datetime import datetime
from functools import cache
from itertools import islice
from typing import Any

from pydantic import BaseModel, ConfigDict, computed_field

from .models import CacheRecord
from .refs import ImageRef


class Degree(BaseModel):
    """How well a cache's images align with a group's images."""

    model_config = ConfigDict(frozen=True)

    exact: int  # images whose repository and version (tag or digest) the cache holds
    same_repository: int  # images whose repository the cache holds in another version only
    total: int  # images the group declares

    @property
    def label(self) -> str:
        if self.exact == self.total:
            return "exact"
        if self.exact + self.same_repository == 0:
            return "none"
        if self.exact + self.same_repository == self.total and self.exact == 0:
            return "repository"
        return "partial"

    def describe(self) -> str:
        text = f"{self.exact}/{self.total} images exact"
        if self.same_repository:
            text += f", {self.same_repository} same repository in another version"
        return text


class Candidate(BaseModel):
    model_config = ConfigDict(frozen=True)

    cache_id: str
    name: str
    degree: Degree
    size_gib: int
    fit: str  # what the choice rests on: the images matched and the storage
    created_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def reason(self) -> str:
        return f"{self.fit}; created {self.created_at.isoformat(' ', 'seconds')[:19]}"


class Rejection(BaseModel):
    model_config = ConfigDict(frozen=True)

    cache_id: str
    name: str
    reason: str


class MatchResult(BaseModel):
    """The best candidates in rank order (at most ``limit``) and why others were left out."""

    model_config = ConfigDict(frozen=True)

    needed_gib: int
    ranking: list[Candidate]
    rejected: list[Rejection]
    candidates: int  # how many caches qualified, of which ``ranking`` shows the best

    @property
    def chosen(self) -> Candidate | None:
        return self.ranking[0] if self.ranking else None

    def explain(self) -> str:
        if not self.ranking:
            return f"no usable cache shares an image with this group ({self.needed_gib} GiB)"
        best = self.ranking[0]
        return f"{best.name} ({best.cache_id}): {best.reason}"


DEFAULT_LIMIT = 10


def _query_key(ref: ImageRef) -> str:
    """The version a group asks for: its digest when it pins one (a tag may have moved)."""
    return ref.digest or f"tag:{ref.tag}"


def _version_keys(ref: ImageRef) -> list[str]:
    """The versions a cache holds an image under: its digest and its tag."""
    keys = []
    if ref.digest:
        keys.append(ref.digest)
    if ref.tag:
        keys.append(f"tag:{ref.tag}")
    return keys


def _filter(record: CacheRecord, region: str, needed_gib: int) -> str | None:
    """Why a cache cannot be used at all, or None."""
    if record.region != region:
        return f"in region {record.region}, not {region}"
    if not record.usable:
        return f"not usable ({record.status.value.lower()})"
    if record.size_gib > needed_gib:
        return f"{record.size_gib} GiB does not fit {needed_gib} GiB of ephemeral storage"
    return None


@cache
def _degree(exact: int, same: int, total: int) -> Degree:
    return Degree(exact=exact, same_repository=same, total=total)


def _candidate(record: CacheRecord, degree: Degree, needed_gib: int) -> Candidate:
    return Candidate(
        cache_id=record.id,
        name=record.name,
        degree=degree,
        size_gib=record.size_gib,
        fit=f"{degree.describe()}; {record.size_gib} GiB for {needed_gib} GiB of storage",
        created_at=record.created_at,
    )


def _rejection(record: CacheRecord, region: str, needed_gib: int) -> Rejection:
    reason = _filter(record, region, needed_gib) or "no image in common"
    return Rejection(cache_id=record.id, name=record.name, reason=reason)


def score(record_images: Iterable[ImageRef], group_images: list[ImageRef]) -> tuple[int, int]:
    """(exact, same_repository) counts of the group's images against one cache's images."""
    versions: dict[str, set[str]] = defaultdict(set)
    for ref in record_images:
        versions[ref.repository_key].update(_version_keys(ref))
    exact = same = 0
    for ref in group_images:
        held = versions.get(ref.repository_key)
        if held is None:
            continue
        if _query_key(ref) in held:
            exact += 1
        else:
            same += 1
    return exact, same


def linear_match(
    records: Iterable[CacheRecord],
    group_images: list[ImageRef],
    region: str,
    needed_gib: int,
    limit: int = DEFAULT_LIMIT,
) -> MatchResult:
    """Score every cache and sort them all by the rules: the baseline of the benchmark."""
    images = sorted(set(group_images))
    qualified: list[tuple[CacheRecord, int, int]] = []
    rejected: list[CacheRecord] = []
    for record in records:
        exact, same = score(record.images, images)
        if _filter(record, region, needed_gib) is None and exact + same > 0:
            qualified.append((record, exact, same))
        else:
            rejected.append(record)
    # Stable sorts from the last rule to the first: id, newest, closest size, then degree.
    qualified.sort(key=lambda q: q[0].id)
    qualified.sort(key=lambda q: q[0].created_at, reverse=True)
    qualified.sort(key=lambda q: needed_gib - q[0].size_gib)
    qualified.sort(key=lambda q: (q[1], q[2]), reverse=True)
    ranking = [
        _candidate(record, Degree(exact=exact, same_repository=same, total=len(images)), needed_gib)
        for record, exact, same in qualified[:limit]
    ]
    rejected.sort(key=lambda r: r.id)
    return MatchResult(
        needed_gib=needed_gib,
        ranking=ranking,
        rejected=[_rejection(r, region, needed_gib) for r in rejected[:limit]],
        candidates=len(qualified),
    )


# A usable cache's place in every ranked list: (-size, -created, id). Lists sorted on it hold the
# best candidate first among caches of equal degree: the largest size that fits is the closest to
# the storage, then the newest, then the lowest id.
RankKey = tuple[int, float, str]
# A candidate in a merged ranking: its negated degree (exact images, same-repository images),
# then its RankKey. Sorted ascending, the best candidate comes first.
Ranked = tuple[int, int, int, float, str]
# Caches of a (region, usable, size), in id order: where rejections are found without a scan.
Kind = tuple[str, bool, int]

_NO_IDS: frozenset[str] = frozenset()


def _rank_key(record: CacheRecord) -> RankKey:
    return (-record.size_gib, -record.created_at.timestamp(), record.id)


class _Shelf:
    """The usable caches of one region that hold one repository, or one version of it."""

    __slots__ = ("ids", "ranked")

    def __init__(self) -> None:
        self.ranked: list[RankKey] = []
        self.ids: set[str] = set()

    def fitting(self, needed_gib: int) -> int:
        """Where the caches that fit ``needed_gib`` start (sizes descend)."""
        return bisect_left(self.ranked, (-needed_gib,))


def _version_shelf(repository: str, version: str) -> str:
    # Names of shelves are strings, not tuples: building the index allocates no objects the
    # garbage collector has to track, which would make it re-scan everything already built.
    return f"{repository} {version}"


def _stream(
    shelf: _Shelf | None, needed_gib: int, degree: tuple[int, int], *skip: Container[str]
) -> Iterator[Ranked]:
    """A shelf's caches that fit, in rank order, prefixed with their (negated) degree."""
    if shelf is None:
        return
    for key in islice(shelf.ranked, shelf.fitting(needed_gib), None):
        if any(key[2] in ids for ids in skip):
            continue
        yield (*degree, *key)


class CacheIndex:
    """Ranked lists per region and repository (and version); add/remove as caches change."""

    def __init__(self, records: Iterable[CacheRecord] = ()) -> None:
        self._records: dict[str, CacheRecord] = {}
        self._keys: dict[str, RankKey] = {}  # usable caches only
        # region -> repository (or "repository version") -> usable caches.
        self._shelves: defaultdict[str, defaultdict[str, _Shelf]] = defaultdict(
            lambda: defaultdict(_Shelf)
        )
        # Every cache, for rejections: repository -> kind -> ids in order.
        self._kinds: defaultdict[str, defaultdict[Kind, list[str]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for record in records:
            self._records.pop(record.id, None)
            self._records[record.id] = record
        # Fill the lists, then sort each once (adding one by one would move entries n^2).
        for record in self._records.values():
            self._place(record, list.append)
        for shelves in self._shelves.values():
            for shelf in shelves.values():
                shelf.ranked.sort()
        for kinds in self._kinds.values():
            for ids in kinds.values():
                ids.sort()

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, cache_id: str) -> bool:
        return cache_id in self._records

    @staticmethod
    def _held(record: CacheRecord) -> tuple[set[str], set[str]]:
        """The repositories a cache holds, and the versions (as version shelf names)."""
        repositories = set()
        versions = set()
        for ref in record.images:
            repository = ref.repository_key
            repositories.add(repository)
            if ref.digest:
                versions.add(_version_shelf(repository, ref.digest))
            if ref.tag:
                versions.add(_version_shelf(repository, f"tag:{ref.tag}"))
        return repositories, versions

    def _place(self, record: CacheRecord, add: Callable[[list[Any], Any], None]) -> None:
        cache_id = record.id
        usable = record.usable
        repositories, versions = self._held(record)
        kind: Kind = (record.region, usable, record.size_gib)
        for repository in repositories:
            add(self._kinds[repository][kind], cache_id)
        if not usable:
            return
        key = self._keys[cache_id] = _rank_key(record)
        shelves = self._shelves[record.region]
        for name in repositories | versions:
            shelf = shelves[name]
            add(shelf.ranked, key)
            shelf.ids.add(cache_id)

    def add(self, record: CacheRecord) -> None:
        """Add or replace a cache (call again after its status or images change)."""
        self.remove(record.id)
        self._records[record.id] = record
        self._place(record, insort)

    def remove(self, cache_id: str) -> None:
        record = self._records.pop(cache_id, None)
        if record is None:
            return
        repositories, versions = self._held(record)
        kind: Kind = (record.region, record.usable, record.size_gib)
        for repository in repositories:
            kinds = self._kinds[repository]
            ids = kinds[kind]
            del ids[bisect_left(ids, cache_id)]
            if not ids:
                del kinds[kind]
                if not kinds:
                    del self._kinds[repository]
        key = self._keys.pop(cache_id, None)
        if key is None:
            return
        shelves = self._shelves[record.region]
        for name in repositories | versions:
            shelf = shelves[name]
            del shelf.ranked[bisect_left(shelf.ranked, key)]
            shelf.ids.discard(cache_id)
            if not shelf.ids:
                del shelves[name]

    def match(
        self,
        group_images: list[ImageRef],
        region: str,
        needed_gib: int,
        limit: int = DEFAULT_LIMIT,
    ) -> MatchResult:
        images = sorted(set(group_images))
        wanted = [(ref.repository_key, _query_key(ref)) for ref in images]
        asked = Counter(repository for repository, _ in wanted)  # images per repository
        shelves: dict[str, _Shelf] = self._shelves.get(region, {})
        repositories = [(name, shelves.get(name)) for name in asked]
        holders = [shelf.ids if shelf else _NO_IDS for _, shelf in repositories]

        # Caches holding several of the group's repositories: their degree is a sum, so each
        # is scored on its own. A repository asked for twice makes all its holders such caches.
        several: set[str] = set()
        for i, (name, _) in enumerate(repositories):
            if asked[name] > 1:
                several |= holders[i]
            for other in holders[i + 1 :]:
                several |= holders[i] & other
        exact_shelves = [shelves.get(_version_shelf(*version)) for version in wanted]
        exact_holders = [shelf.ids if shelf else _NO_IDS for shelf in exact_shelves]
        scored: list[Ranked] = []
        counted_twice = 0
        for cache_id in several:
            key = self._keys[cache_id]
            if -key[0] > needed_gib:
                continue
            held = [
                asked[name]
                for (name, _), ids in zip(repositories, holders, strict=True)
                if cache_id in ids
            ]
            counted_twice += len(held) - 1
            exact = sum(cache_id in ids for ids in exact_holders)
            scored.append((-exact, exact - sum(held), *key))
        scored.sort()

        # Every other candidate holds one repository, asked for once: exact if it holds the
        # asked version, same repository otherwise. Its shelf is already in rank order.
        candidates = -counted_twice
        for _, shelf in repositories:
            if shelf is not None:
                candidates += len(shelf.ranked) - shelf.fitting(needed_gib)
        streams: list[Iterable[Ranked]] = [scored]
        for (repository, _), exact_shelf, exact_ids in zip(
            wanted, exact_shelves, exact_holders, strict=True
        ):
            shelf = shelves.get(repository)
            if shelf is None or asked[repository] > 1:
                continue
            streams.append(_stream(exact_shelf, needed_gib, (-1, 0), several))
            streams.append(_stream(shelf, needed_gib, (0, -1), several, exact_ids))

        total = len(images)
        ranking = []
        for minus_exact, minus_same, _, _, cache_id in islice(heapq.merge(*streams), limit):
            degree = _degree(-minus_exact, -minus_same, total)
            ranking.append(_candidate(self._records[cache_id], degree, needed_gib))
        return MatchResult(
            needed_gib=needed_gib,
            ranking=ranking,
            rejected=self._rejected(asked, region, needed_gib, limit),
            candidates=candidates,
        )

    def _rejected(
        self, repositories: Iterable[str], region: str, needed_gib: int, limit: int
    ) -> list[Rejection]:
        """The first ``limit`` caches by id that hold a group repository but cannot be used."""
        lists = [
            islice(ids, limit)
            for repository in repositories
            for (cache_region, usable, size), ids in self._kinds.get(repository, {}).items()
            if cache_region != region or not usable or size > needed_gib
        ]
        rejected: list[Rejection] = []
        previous = None
        for cache_id in heapq.merge(*lists):
            if cache_id == previous:  # held in two of the group's repositories
                continue
            previous = cache_id
            rejected.append(_rejection(self._records[cache_id], region, needed_gib))
            if len(rejected) == limit:
                break
        return rejected
