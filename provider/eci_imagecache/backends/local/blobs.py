"""Content-addressed blob store: ``<root>/sha256/<2 hex>/<64 hex>``.

A blob lands in a temporary file named after the writing process and is renamed into place only
after its digest is verified, so the store never holds a partial or wrong blob under a digest.
Digests are checked against a strict pattern before they become paths, so a crafted digest (from a
user or a registry) cannot point outside the store.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")


class UnsafeDigest(ValueError):
    pass


def digest_hex(digest: str) -> str:
    match = _DIGEST.fullmatch(digest)
    if match is None:
        raise UnsafeDigest(f"refusing blob digest {digest[:80]!r}: not sha256:<64 hex>")
    return match.group(1)


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        hex_part = digest_hex(digest)
        return self.root / "sha256" / hex_part[:2] / hex_part

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def write(self, digest: str, fill: Callable[[IO[bytes]], object]) -> Path:
        """Call ``fill(file)`` (which must verify the digest) and move the result into place."""
        final = self.path(digest)
        temp = self.tmp / f"{os.getpid()}-{secrets.token_hex(6)}.part"
        try:
            with open(temp, "wb") as out:
                fill(out)
            final.parent.mkdir(parents=True, exist_ok=True)
            # Read-only: container groups hard-link blobs, and a write through a link must
            # not change what the store holds under a digest.
            os.chmod(temp, 0o444)
            os.replace(temp, final)
        finally:
            temp.unlink(missing_ok=True)
        return final

    def link_into(self, digest: str, target: Path) -> None:
        """Make ``target`` a hard link to the blob (a copy across file systems)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        try:
            os.link(self.path(digest), target)
        except OSError:
            import shutil

            shutil.copyfile(self.path(digest), target)

    def remove_stale_temp_files(self, live_pids: Callable[[int], bool]) -> int:
        """Delete temporary files whose writing process is gone (a crash mid-download)."""
        removed = 0
        for temp in self.tmp.glob("*.part"):
            pid = temp.name.split("-", 1)[0]
            if pid.isdigit() and not live_pids(int(pid)):
                temp.unlink(missing_ok=True)
                removed += 1
        return removed

    def digests(self) -> Iterable[str]:
        for path in (self.root / "sha256").glob("*/*"):
            if _DIGEST.fullmatch(f"sha256:{path.name}"):
                yield f"sha256:{path.name}"

    def remove(self, digest: str) -> int:
        path = self.path(digest)
        size = path.stat().st_size if path.exists() else 0
        path.unlink(missing_ok=True)
        return size
