"""Content-addressed blob store: ``<root>/sha256/<2 hex>/<64 hex>``. It holds image configs and
blobs that were not unpacked; a layer unpacked as it downloads is kept in the layer store only.

A blob lands in a temporary file named after the writing process and is renamed into place only
after its digest is verified, so the store never holds a partial or wrong blob under a digest.
Digests are checked against a strict pattern before they become paths, so a crafted digest (from a
user or a registry) cannot point outside the store.

Durability: by default a blob is not flushed to disk before it gets its name (``fsync`` costs a
full write-back of every image, several times the download on ordinary disks). What a power cut
can then leave is a blob shorter than its size, as journaling file systems in their default
ordered mode (ext4, xfs) never expose unwritten blocks. Such a blob is never served: a snapshot
checks every blob's size before a cache is Ready, and a build counts a blob as held (to reuse)
only at its full size, so it is fetched again. ``fsync=True`` (``$ECI_IMAGECACHE_FSYNC=1``)
flushes each blob and its directory around the rename, for file systems without that guarantee
(and each unpacked layer's files, see runtime/layers.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
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
    def __init__(self, root: Path, fsync: bool = False, create: bool = True) -> None:
        """``create=False``: only look (nothing is made; a missing store holds nothing)."""
        self.root = root
        self.fsync = fsync
        self.tmp = root / "tmp"
        if create:
            # 0700: blobs are the images' content (setuid files among it), root's alone.
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
            if stat.S_IMODE(root.stat().st_mode) != 0o700:
                os.chmod(root, 0o700)
            self.tmp.mkdir(exist_ok=True)

    def path(self, digest: str) -> Path:
        hex_part = digest_hex(digest)
        return self.root / "sha256" / hex_part[:2] / hex_part

    def has(self, digest: str, size: int | None = None) -> bool:
        """Whether the blob is stored (at ``size`` bytes, when given)."""
        try:
            stored = self.path(digest).stat()
        except FileNotFoundError:
            return False
        return size is None or stored.st_size == size

    def write(self, digest: str, fill: Callable[[IO[bytes]], object]) -> Path:
        """Call ``fill(file)`` (which must verify the digest) and move the result into place."""
        final = self.path(digest)
        temp = self.tmp / f"{os.getpid()}-{secrets.token_hex(6)}.part"
        try:
            # Unbuffered: the writer hands over large chunks, which go to the kernel as they are.
            with open(temp, "wb", buffering=0) as out:
                fill(out)
                if self.fsync:
                    os.fsync(out.fileno())
            # Read-only: container groups hard-link blobs, and a write through a link must
            # not change what the store holds under a digest.
            os.chmod(temp, 0o444)
            self._place(temp, final)
            if self.fsync:
                directory = os.open(final.parent, os.O_RDONLY)
                try:
                    os.fsync(directory)
                finally:
                    os.close(directory)
        finally:
            temp.unlink(missing_ok=True)
        return final

    @staticmethod
    def _place(temp: Path, final: Path) -> None:
        """Rename ``temp`` to ``final``, making its directory; once more if a removal took
        that directory away in between (see :meth:`remove`)."""
        for attempt in range(2):
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(temp, final)
                return
            except FileNotFoundError:
                if attempt or not temp.exists():
                    raise

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
        """Delete the blob, and its directories once empty (the store is back to its size
        before the blob came); returns the bytes freed."""
        path = self.path(digest)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        with contextlib.suppress(OSError):  # another blob is in it
            path.parent.rmdir()
            path.parent.parent.rmdir()
        return size
