"""Automatic matching: which cache a container group uses, and why.

1. Candidates are usable caches in the group's region whose size fits its ephemeral storage.
2. They rank by image match degree (exact version > same repository, other version > nothing),
   then by size closest to the storage the group has, then newest first.

:class:`CacheIndex` finds candidates through postings keyed by repository and version, so a match
touches only caches that share a repository with the group; :func:`linear_match` scans every
cache with the same scoring and is the reference the index is tested and benchmarked against.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict

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
    reason: str


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


def _query_keys(ref: ImageRef) -> list[str]:
    """The version a group asks for: its digest when it pins one (a tag may have moved)."""
    return [ref.digest] if ref.digest else [f"tag:{ref.tag}"]


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


Static = tuple[str, bool, int, float]  # region, usable, size, -created timestamp


def _static(record: CacheRecord) -> Static:
    """What ranking needs of a cache besides its images, computed once per index entry."""
    return (record.region, record.usable, record.size_gib, -record.created_at.timestamp())


def _result(
    scored: Iterable[tuple[CacheRecord, Static, int, int]],
    total: int,
    region: str,
    needed_gib: int,
    limit: int,
) -> MatchResult:
    """Rank (record, static, exact, same_repository); only the best ``limit`` become models."""
    keyed: list[tuple[tuple, CacheRecord, int, int]] = []
    rejected: list[CacheRecord] = []
    for record, (cache_region, usable, size, newest), exact, same in scored:
        if cache_region != region or not usable or size > needed_gib or exact + same == 0:
            rejected.append(record)
            continue
        keyed.append(((-exact, -same, needed_gib - size, newest, record.id), record, exact, same))
    ranking = []
    # Keys end in the unique cache id, so tuples never compare past it.
    for _, record, exact, same in heapq.nsmallest(limit, keyed):
        degree = Degree(exact=exact, same_repository=same, total=total)
        reason = (
            f"{degree.describe()}; {record.size_gib} GiB for {needed_gib} GiB of storage; "
            f"created {record.created_at:%Y-%m-%d %H:%M:%S}"
        )
        ranking.append(
            Candidate(
                cache_id=record.id,
                name=record.name,
                degree=degree,
                size_gib=record.size_gib,
                reason=reason,
            )
        )
    rejections = [
        Rejection(
            cache_id=record.id,
            name=record.name,
            reason=_filter(record, region, needed_gib) or "no image in common",
        )
        for record in sorted(rejected, key=lambda r: r.id)[:limit]
    ]
    return MatchResult(
        needed_gib=needed_gib, ranking=ranking, rejected=rejections, candidates=len(keyed)
    )


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
        if held.intersection(_query_keys(ref)):
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
    """Score every cache: the reference behaviour, and the baseline of the benchmark."""
    images = sorted(set(group_images))
    scored = ((r, _static(r), *score(r.images, images)) for r in records)
    return _result(scored, len(images), region, needed_gib, limit)


class CacheIndex:
    """Postings from repository and version to cache ids; add/remove as caches change."""

    def __init__(self, records: Iterable[CacheRecord] = ()) -> None:
        self._records: dict[str, tuple[CacheRecord, Static]] = {}
        self._by_repository: dict[str, set[str]] = defaultdict(set)
        self._by_version: dict[tuple[str, str], set[str]] = defaultdict(set)
        for record in records:
            self.add(record)

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, cache_id: str) -> bool:
        return cache_id in self._records

    def add(self, record: CacheRecord) -> None:
        """Add or replace a cache (call again after its status or images change)."""
        self.remove(record.id)
        self._records[record.id] = (record, _static(record))
        for ref in record.images:
            self._by_repository[ref.repository_key].add(record.id)
            for key in _version_keys(ref):
                self._by_version[(ref.repository_key, key)].add(record.id)

    def remove(self, cache_id: str) -> None:
        entry = self._records.pop(cache_id, None)
        if entry is None:
            return
        record = entry[0]
        for ref in record.images:
            self._discard(self._by_repository, ref.repository_key, cache_id)
            for key in _version_keys(ref):
                self._discard(self._by_version, (ref.repository_key, key), cache_id)

    @staticmethod
    def _discard(postings: dict, key: object, cache_id: str) -> None:
        ids = postings.get(key)
        if ids is not None:
            ids.discard(cache_id)
            if not ids:
                del postings[key]

    def match(
        self,
        group_images: list[ImageRef],
        region: str,
        needed_gib: int,
        limit: int = DEFAULT_LIMIT,
    ) -> MatchResult:
        images = sorted(set(group_images))
        # Counting over the postings (Counter.update runs in C): how many of the group's
        # images each cache holds in the same version, and in the same repository at all.
        exact: Counter[str] = Counter()
        touched: Counter[str] = Counter()
        for ref in images:
            exact.update(self._by_version.get((ref.repository_key, _query_keys(ref)[0]), ()))
            touched.update(self._by_repository.get(ref.repository_key, ()))
        records = self._records
        scored = (
            (*records[cache_id], exact[cache_id], count - exact[cache_id])
            for cache_id, count in touched.items()
        )
        return _result(scored, len(images), region, needed_gib, limit)
