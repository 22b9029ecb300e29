"""Content-addressed store of unpacked layers: ``<root>/sha256/<64 hex>/`` per layer blob.

Each layer is applied once into its own directory in overlayfs format, so a container's root file
system is an overlay mount of its image's layer directories (no copy of image bytes) and a layer
shared by several images or caches is unpacked once. A layer is unpacked into a temporary
directory and renamed into place when complete: a directory under ``sha256/`` is always a whole
layer, and is never written again (overlay mounts use it as a read-only lower directory). With
``fsync``, its files and directories are flushed before the rename and its name after (as the
blob store does for blobs).

Applying a changeset follows the OCI image spec (layer.md), and treats the archive as hostile:

- names are relative to the layer; absolute names are made relative, ``..`` is refused, and no
  entry is written through a symbolic link (every existing parent must be a real directory);
- a whiteout ``.wh.<name>`` becomes an overlayfs whiteout (a 0/0 character device) unless the
  same layer made ``<name>`` itself (whiteouts only hide lower layers); an opaque whiteout
  ``.wh..wh..opq`` marks its directory opaque (``trusted.overlay.opaque``), whatever its order
  in the archive; a directory made over a whiteout of the same layer is opaque too;
- a hard link must point to a regular file this layer already holds;
- device nodes are refused (a container gets its ``/dev`` from the runtime), as are unknown entry
  types; the unpacked size is bounded.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import queue
import re
import secrets
import shutil
import stat
import tarfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from isal import isal_zlib

_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
GZIP_TYPES = {
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
}
TAR_TYPES = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
}
_CHUNK = 1 << 20
_QUEUED = 8  # chunks a download may be ahead of its layer's unpacking


class UnsafeLayer(ValueError):
    """The archive asks for something a layer may not do (escape, device node, bad link)."""


class UnsupportedLayer(ValueError):
    """A layer media type this store cannot apply (e.g. zstd)."""


@dataclass(frozen=True)
class Unpacked:
    digest: str
    path: Path
    bytes: int  # bytes of file content written (0 when the layer was already unpacked)
    seconds: float
    reused: bool


def layer_hex(digest: str) -> str:
    match = _DIGEST.fullmatch(digest)
    if match is None:
        raise UnsafeLayer(f"refusing layer digest {digest[:80]!r}: not sha256:<64 hex>")
    return match.group(1)


class LayerStore:
    def __init__(
        self,
        root: Path,
        max_layer_bytes: int = 64 << 30,
        fsync: bool = False,
        create: bool = True,
    ) -> None:
        """``create=False``: only look (nothing is made; a missing store holds nothing)."""
        self.root = root
        self.fsync = fsync
        self.layers = root / "sha256"
        self.tmp = root / "tmp"
        self.max_layer_bytes = max_layer_bytes
        if create:
            self.layers.mkdir(parents=True, exist_ok=True)
            self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.layers / layer_hex(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).is_dir()

    def digests(self) -> Iterable[str]:
        if not self.layers.is_dir():
            return
        for path in self.layers.iterdir():
            if _DIGEST.fullmatch(f"sha256:{path.name}"):
                yield f"sha256:{path.name}"

    def unpack(self, digest: str, blob: Path, media_type: str | None = None) -> Unpacked:
        """Apply the layer blob at ``blob`` (already verified against ``digest``) once.

        Without a media type, the compression is read from the blob's first bytes."""
        started = time.perf_counter()
        if self.has(digest):
            return Unpacked(digest, self.path(digest), 0, time.perf_counter() - started, True)
        with open(blob, "rb", buffering=0) as raw:
            staged = self.stage(digest, raw, media_type)
        return staged.commit()

    def stage(self, digest: str, raw: IO[bytes], media_type: str | None = None) -> Staged:
        """Apply the layer read from ``raw`` into a temporary directory; nothing is under the
        digest until :meth:`Staged.commit` (the caller commits once the blob is verified)."""
        final = self.path(digest)
        started = time.perf_counter()
        head = _read_at_least(raw, 4)
        compressed = _compression(digest, head, media_type)
        temp = self.tmp / f"{os.getpid()}-{secrets.token_hex(6)}"
        temp.mkdir()
        try:
            stream: IO[bytes] = _Prefixed(head, raw)  # type: ignore[assignment]
            if compressed:
                stream = _Gunzip(stream)  # type: ignore[assignment]
            written = _apply(stream, temp, self.max_layer_bytes, digest)
        except BaseException:
            _remove_tree(temp)
            raise
        return Staged(digest, temp, final, written, started, self.fsync)

    def feed(self, digest: str) -> Feed:
        """A :class:`Feed` unpacking this layer from the bytes written to it."""
        return Feed(self, digest)

    def size(self, digest: str) -> int:
        """Bytes of the layer's files (each file once, however many links it has)."""
        seen: dict[int, int] = {}
        for directory, _, files in os.walk(self.path(digest)):
            for name in files:
                info = os.lstat(os.path.join(directory, name))
                if stat.S_ISREG(info.st_mode):
                    seen[info.st_ino] = info.st_size
        return sum(seen.values())

    def remove(self, digest: str) -> None:
        path = self.path(digest)
        if path.is_dir():
            # Rename first: a half-removed directory must never look like a whole layer.
            doomed = self.tmp / f"{os.getpid()}-rm-{secrets.token_hex(6)}"
            os.rename(path, doomed)
            _remove_tree(doomed)

    def remove_stale_temp_dirs(self, alive: Callable[[int], bool]) -> int:
        removed = 0
        for temp in self.tmp.iterdir():
            pid = temp.name.split("-", 1)[0]
            if pid.isdigit() and not alive(int(pid)):
                _remove_tree(temp)
                removed += 1
        return removed


class Staged:
    """A layer applied into a temporary directory, waiting to be committed or discarded."""

    def __init__(
        self, digest: str, temp: Path, final: Path, written: int, started: float, fsync: bool
    ) -> None:
        self.digest = digest
        self.temp = temp
        self.final = final
        self.written = written
        self.started = started
        self.fsync = fsync

    def commit(self) -> Unpacked:
        """Rename into place; a layer another process finished first is kept, this one goes."""
        try:
            if self.fsync:
                _flush_tree(self.temp)
            os.rename(self.temp, self.final)
            if self.fsync:
                _flush(self.final.parent)
        except OSError:
            if not self.final.is_dir():
                raise
            return Unpacked(self.digest, self.final, 0, time.perf_counter() - self.started, True)
        finally:
            self.discard()
        return Unpacked(
            self.digest, self.final, self.written, time.perf_counter() - self.started, False
        )

    def discard(self) -> None:
        if self.temp.exists():
            _remove_tree(self.temp)


class Feed:
    """Unpacks a layer from the bytes written to it, as they arrive: a download writes each
    chunk here beside the blob file, and a thread of its own applies the layer from them (the
    chunks themselves, handed over, not copied), so hashing, decompression and extraction are
    one pass and overlap the download.

    ``close(verified=True)`` (the blob matched its digest) waits for the layer and commits it;
    ``close(verified=False)`` discards it. A layer that fails to apply stops taking bytes
    (writes are dropped, so the download goes on) and its error is raised by ``close``."""

    def __init__(self, store: LayerStore, digest: str) -> None:
        self.store = store
        self.digest = digest
        self._chunks = _Chunks()
        self._staged: Staged | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"unpack-{digest[7:19]}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            self._staged = self.store.stage(self.digest, self._chunks)  # type: ignore[arg-type]
        except BaseException as err:  # handed to ``close``
            self._error = err
        finally:
            self._chunks.drain()  # a writer waiting for room goes on

    def write(self, data: bytes) -> None:
        if self._error is None:
            self._chunks.put(data)

    def close(self, verified: bool) -> Unpacked | None:
        self._chunks.put(None)
        self._thread.join()
        staged, self._staged = self._staged, None
        if not verified:
            if staged is not None:
                staged.discard()
            return None
        if self._error is not None:
            raise self._error
        assert staged is not None
        return staged.commit()


class _Chunks:
    """The chunks a download hands to a :class:`Feed`, read back as a stream (each ``read``
    returns the next whole chunk). At most ``_QUEUED`` wait: a writer ahead of the unpacking
    waits for room."""

    def __init__(self) -> None:
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUED)
        self.ended = False

    def put(self, chunk: bytes | None) -> None:
        self.queue.put(chunk)

    def read(self, size: int = -1) -> bytes:
        if self.ended:
            return b""
        chunk = self.queue.get()
        if chunk is None:
            self.ended = True
            return b""
        return chunk

    def drain(self) -> None:
        while self.read():
            pass


def _read_at_least(raw: IO[bytes], size: int) -> bytes:
    head = b""
    while len(head) < size and (more := raw.read(size - len(head))):
        head += more
    return head


def _compression(digest: str, magic: bytes, media_type: str | None) -> bool:
    """True for gzip, False for a plain tar; anything else is refused."""
    if media_type in GZIP_TYPES:
        return True
    if media_type in TAR_TYPES:
        return False
    if media_type:
        raise UnsupportedLayer(f"layer {digest[:19]}: media type {media_type!r} not supported")
    if magic[:2] == b"\x1f\x8b":
        return True
    if magic[:4] == b"\x28\xb5\x2f\xfd":
        raise UnsupportedLayer(f"layer {digest[:19]}: zstd layers are not supported")
    return False


class _Prefixed(io.RawIOBase):
    """``head`` (bytes already read to tell the compression), then the rest of ``raw``."""

    def __init__(self, head: bytes, raw: IO[bytes]) -> None:
        self.head = head
        self.raw = raw

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.head:
            head, self.head = self.head, b""
            return head
        return self.raw.read(size if size and size > 0 else _CHUNK)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _inflater() -> Any:
    return isal_zlib.decompressobj(16 + isal_zlib.MAX_WBITS)  # gzip members


class _Gunzip(io.RawIOBase):
    """gzip decompression in large steps (the inflater checks each member's CRC and length
    itself): far fewer Python-level calls than ``gzip.GzipFile``, which reads in small pieces.
    The inflater is ISA-L's (python-isal), two to three times zlib's speed on layers."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.inflate = _inflater()
        self.pending = b""
        self.members = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        limit = size if size and size > 0 else _CHUNK
        while True:
            if self.inflate.unconsumed_tail:
                out = self.inflate.decompress(self.inflate.unconsumed_tail, limit)
            else:
                if self.inflate.eof:
                    rest = self.inflate.unused_data or self.raw.read(_CHUNK)
                    if not rest.strip(b"\0"):
                        return b""  # the end (some writers pad with zeros)
                    self.inflate = _inflater()  # another member
                    out = self.inflate.decompress(rest, limit)
                else:
                    chunk = self.raw.read(_CHUNK)
                    if not chunk:
                        raise EOFError("the gzip stream ends before its end marker")
                    out = self.inflate.decompress(chunk, limit)
            if out:
                return out

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Forward:
    """The layer archive as tarfile's seekable mode reads it, moving forward only: tarfile finds
    each member by offset, and a regular file's bytes go from the decompressor's output to their
    file as they are (tarfile's stream mode copied every byte several times on the way)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.pos = 0
        self.chunk = memoryview(b"")

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            offset += self.pos
        elif whence != os.SEEK_SET or offset < self.pos:
            raise tarfile.ReadError("the archive would be read backwards")
        self.copy_to(None, offset - self.pos)
        return self.pos

    def _next(self, size: int) -> memoryview:
        """Up to ``size`` bytes of what is left; empty at the end."""
        if not self.chunk:
            self.chunk = memoryview(self.raw.read(_CHUNK))
        piece, self.chunk = self.chunk[:size], self.chunk[size:]
        self.pos += len(piece)
        return piece

    def read(self, size: int = -1) -> bytes:
        parts = []
        left = size if size >= 0 else 1 << 62
        while left and (piece := self._next(left)):
            parts.append(piece)
            left -= len(piece)
        return b"".join(parts)

    def copy_to(self, out: IO[bytes] | None, size: int) -> None:
        """The next ``size`` bytes to ``out`` (or nowhere), without copying them first."""
        while size:
            piece = self._next(size)
            if not piece:
                raise tarfile.ReadError("unexpected end of data")
            size -= len(piece)
            while out is not None and piece:
                piece = piece[out.write(piece) or 0 :]


def _flush(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _flush_tree(root: Path) -> None:
    """fsync every regular file and directory under ``root`` (whiteouts and links have no
    data of their own; their directories' entries are flushed with the directories)."""
    for directory, _, files in os.walk(root):
        for name in files:
            path = Path(directory, name)
            if stat.S_ISREG(path.lstat().st_mode):
                _flush(path)
        _flush(Path(directory))


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _relative(name: str, digest: str) -> tuple[str, ...]:
    parts = tuple(p for p in name.replace("\\", "/").split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeLayer(f"layer {digest[:19]}: entry {name[:200]!r} escapes the layer")
    return parts


class _Applier:
    def __init__(self, root: Path, limit: int, digest: str) -> None:
        self.root = root
        self.limit = limit
        self.digest = digest
        self.written = 0
        self.made: set[tuple[str, ...]] = set()  # paths this layer created
        self.whiteouts: set[tuple[str, ...]] = set()  # whiteout devices this layer created
        self.dir_attrs: list[tuple[Path, tarfile.TarInfo]] = []

    def fail(self, name: str, why: str) -> UnsafeLayer:
        return UnsafeLayer(f"layer {self.digest[:19]}: entry {name[:200]!r} {why}")

    def parent(self, parts: tuple[str, ...], name: str) -> Path:
        """The parent directory of ``parts``, made if missing, never reached through a link."""
        here = self.root
        for depth, part in enumerate(parts[:-1], start=1):
            here = here / part
            try:
                mode = os.lstat(here).st_mode
            except FileNotFoundError:
                os.mkdir(here, 0o755)
                continue
            if stat.S_ISCHR(mode) and parts[:depth] in self.whiteouts:
                # A directory of this layer under a path it whited out: replace the whiteout.
                os.unlink(here)
                os.mkdir(here, 0o755)
                _set_opaque(here)
                self.whiteouts.discard(parts[:depth])
                continue
            if not stat.S_ISDIR(mode):
                raise self.fail(name, "has a parent that is not a directory (a link?)")
        return here

    def clear(self, path: Path, keep_dir: bool) -> bool:
        """Make room for a new entry at ``path``; True when it was a whiteout of this layer."""
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(mode):
            if keep_dir:
                return False
            shutil.rmtree(path)
            return False
        os.unlink(path)
        return stat.S_ISCHR(mode)

    def apply(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        parts = _relative(member.name, self.digest)
        if not parts:
            return  # the layer root itself
        base = parts[-1]
        if base == OPAQUE:
            directory = self.parent(parts, member.name)
            _set_opaque(directory)
            return
        if base.startswith(WHITEOUT):
            target = (*parts[:-1], base[len(WHITEOUT) :])
            if not target[-1] or target[-1] in (".", ".."):
                raise self.fail(member.name, "is a whiteout of nothing")
            if target in self.made:
                return  # whiteouts hide lower layers only
            path = self.parent(target, member.name) / target[-1]
            self.clear(path, keep_dir=False)
            os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))
            self.whiteouts.add(target)
            return
        if member.ischr() or member.isblk():
            raise self.fail(member.name, "is a device node: refused")
        path = self.parent(parts, member.name) / base
        if member.isdir():
            replaced = self.clear(path, keep_dir=True)
            if not path.is_dir():
                os.mkdir(path, 0o755)
            if replaced and parts in self.whiteouts:
                _set_opaque(path)  # the lower directory was removed, this one replaces it
            self.dir_attrs.append((path, member))
        elif member.isreg():
            self.clear(path, keep_dir=False)
            self.count(member.size, member.name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb", buffering=0) as out:
                if member.issparse():
                    source = tar.extractfile(member)
                    if source is not None:
                        shutil.copyfileobj(source, out, _CHUNK)
                else:
                    stream = tar.fileobj
                    assert isinstance(stream, _Forward)
                    stream.seek(member.offset_data)
                    stream.copy_to(out, member.size)
            self.attrs(path, member)
        elif member.issym():
            self.clear(path, keep_dir=False)
            os.symlink(member.linkname, path)
            self.attrs(path, member)
        elif member.islnk():
            link = _relative(member.linkname, self.digest)
            if link not in self.made:
                raise self.fail(
                    member.name,
                    f"is a hard link to {member.linkname[:200]!r}, which this layer does not hold",
                )
            source_path = self.parent(link, member.name) / link[-1]
            if not stat.S_ISREG(os.lstat(source_path).st_mode):
                raise self.fail(member.name, "is a hard link to something not a regular file")
            self.clear(path, keep_dir=False)
            os.link(source_path, path, follow_symlinks=False)
        elif member.isfifo():
            self.clear(path, keep_dir=False)
            os.mkfifo(path, 0o600)
            self.attrs(path, member)
        else:
            raise self.fail(member.name, f"has an unsupported type {member.type!r}")
        self.made.add(parts)
        self.whiteouts.discard(parts)

    def count(self, size: int, name: str) -> None:
        self.written += size
        if self.written > self.limit:
            raise self.fail(name, f"takes the layer over {self.limit} bytes unpacked")

    @staticmethod
    def attrs(path: Path, member: tarfile.TarInfo) -> None:
        os.lchown(path, member.uid, member.gid)
        if not member.issym():
            os.chmod(path, member.mode & 0o7777)
        with contextlib.suppress(OSError):
            os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)

    def finish(self) -> None:
        # Directories last (deepest first): their times change as entries land in them.
        for path, member in reversed(self.dir_attrs):
            self.attrs(path, member)


def _set_opaque(directory: Path) -> None:
    os.setxattr(directory, OPAQUE_XATTR, b"y", follow_symlinks=False)


def _apply(stream: IO[bytes], root: Path, limit: int, digest: str) -> int:
    applier = _Applier(root, limit, digest)
    try:
        with tarfile.open(fileobj=_Forward(stream), mode="r:") as tar:  # type: ignore[call-overload]
            for member in tar:
                applier.apply(member, tar)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, isal_zlib.error) as err:
        raise UnsafeLayer(f"layer {digest[:19]}: not a valid layer archive ({err})") from None
    applier.finish()
    return applier.written
