"""Snapshots: what a cache holds, each image pinned to its manifest and blobs, one JSON file
per snapshot under ``<data>/snapshots``. A file is written under a temporary name and renamed,
so a snapshot file is whole or absent; the record naming it is committed after it exists and
the file is removed after the record stops naming it (so gc may find files no record names)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from pydantic import BaseModel

from ...engine.planner import ResolvedImage
from ...engine.refs import ImageRef
from ..base import BackendError
from .ids import SNAPSHOT_ID, new_id


class Snapshot(BaseModel):
    """What a cache holds: each image pinned to its manifest and blobs."""

    id: str
    cache_id: str
    images: list[ResolvedImage]

    def find(self, ref: ImageRef) -> ResolvedImage | None:
        """The held image with the same repository and version (tag or digest)."""
        for image in self.images:
            held = ImageRef.parse(image.reference)
            if held.repository_key != ref.repository_key:
                continue
            if (ref.digest and ref.digest in (held.digest, image.manifest_digest)) or (
                not ref.digest and ref.tag == held.tag
            ):
                return image
        return None


class SnapshotFiles:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, snapshot_id: str) -> Path:
        if not SNAPSHOT_ID.fullmatch(snapshot_id):
            raise ValueError(f"not a snapshot id: {snapshot_id[:40]!r}")
        return self.root / f"{snapshot_id}.json"

    def take(
        self,
        holds: Callable[[str, int], bool],
        cache_id: str,
        images: list[ResolvedImage],
        layers: dict[str, int],
    ) -> Snapshot:
        """Check that the store ``holds`` every blob (at its size) or its unpacked layer, then
        write the snapshot file. Digests were verified as the blobs arrived, so this costs a
        stat per blob, not a read of the content."""
        for digest, size in layers.items():
            if not holds(digest, size):
                raise BackendError(f"blob {digest[:19]} is missing or damaged in the store")
        snapshot = Snapshot(id=new_id("snap"), cache_id=cache_id, images=images)
        self.write(snapshot)
        return snapshot

    def write(self, snapshot: Snapshot) -> None:
        temp = self.root / f".{snapshot.id}.tmp"
        temp.write_text(snapshot.model_dump_json())
        os.replace(temp, self._path(snapshot.id))

    def read(self, snapshot_id: str | None) -> Snapshot | None:
        if not snapshot_id:
            return None
        path = self._path(snapshot_id)
        return Snapshot.model_validate_json(path.read_text()) if path.exists() else None

    def remove(self, snapshot_id: str) -> None:
        self._path(snapshot_id).unlink(missing_ok=True)

    def ids(self) -> Iterable[str]:
        """Every snapshot file present (temporary files left by a crash are not listed)."""
        for path in self.root.glob("snap-*.json"):
            if SNAPSHOT_ID.fullmatch(path.stem):
                yield path.stem
