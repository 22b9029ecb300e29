"""Build planning: which layers a new cache fetches, which it reuses, and whether it fits.

Input is what the registry said about each image (its layers with sizes) and the layers other
caches already hold. Layers shared by several images of the same cache are fetched once.
"""

from __future__ import annotations

from collections.abc import Iterable, Set

from pydantic import BaseModel, ConfigDict, Field

from .errors import InvalidProperty
from .models import GIB


class Layer(BaseModel):
    model_config = ConfigDict(frozen=True)

    digest: str
    size: int = Field(ge=0)


class ResolvedImage(BaseModel):
    """An image pinned to one manifest: its config blob and layers, in order."""

    model_config = ConfigDict(frozen=True)

    reference: str
    manifest_digest: str
    config: Layer
    layers: list[Layer]

    @property
    def blobs(self) -> list[Layer]:
        return [self.config, *self.layers]


class PlanError(InvalidProperty):
    """The build cannot work as declared (e.g. content larger than the cache)."""


class BuildPlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    images: list[ResolvedImage]
    fetch: list[Layer]
    reuse: list[Layer]
    size_gib: int

    @property
    def fetch_bytes(self) -> int:
        return sum(layer.size for layer in self.fetch)

    @property
    def reuse_bytes(self) -> int:
        return sum(layer.size for layer in self.reuse)

    @property
    def content_bytes(self) -> int:
        return self.fetch_bytes + self.reuse_bytes

    def summary(self) -> str:
        return (
            f"{counted(len(self.images), 'image')}, "
            f"{counted(len(self.fetch) + len(self.reuse), 'blob')} "
            f"({human_bytes(self.content_bytes)}): "
            f"fetch {len(self.fetch)} ({human_bytes(self.fetch_bytes)}), "
            f"reuse {len(self.reuse)} ({human_bytes(self.reuse_bytes)}), "
            f"fits in {self.size_gib} GiB"
        )


def counted(n: int, noun: str) -> str:
    """``n`` and the noun, plural unless there is one: "1 image", "3 images"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def plan_build(
    images: Iterable[ResolvedImage],
    size_gib: int,
    held_elsewhere: Set[str] = frozenset(),
    layer_reuse: bool = False,
) -> BuildPlan:
    """Plan a build. ``held_elsewhere`` are digests other caches hold; used only with reuse on.

    Raises :class:`PlanError` when the unique content exceeds ``size_gib``.
    """
    images = list(images)
    unique: dict[str, Layer] = {}
    for image in images:
        for blob in image.blobs:
            unique.setdefault(blob.digest, blob)
    fetch: list[Layer] = []
    reuse: list[Layer] = []
    for digest, blob in unique.items():
        (reuse if layer_reuse and digest in held_elsewhere else fetch).append(blob)
    plan = BuildPlan(images=images, fetch=fetch, reuse=reuse, size_gib=size_gib)
    if plan.content_bytes > size_gib * GIB:
        raise PlanError(
            "size_gib",
            f"the images need {human_bytes(plan.content_bytes)}, "
            f"more than the cache size of {size_gib} GiB",
        )
    return plan
