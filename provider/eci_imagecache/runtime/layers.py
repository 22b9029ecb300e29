"""Content-addressed store of unpacked layers: ``<root>/sha256/<64 hex>/`` per layer blob.

Each layer is applied once into its own directory in overlayfs format, so a container's root file
system is an overlay mount of its image's layer directories (no copy of image bytes) and a layer
shared by several images or caches is unpacked once. A layer is unpacked into a temporary
directory and renamed into place when complete: a directory under ``sha256/`` is always a whole
layer, and is never written again (overlay mounts use it as a read-only lower directory). Beside
it, ``<root>/meta/<64 hex>`` records the layer's ``diff_id`` and unpacked size (written before the
rename). With ``fsync``, its files and directories are flushed before the rename and its name
after (as the blob store does for blobs). The store's directories are 0700 (tightened when an
existing store is opened): a setuid file of a layer is reachable by root only.

Applying a changeset follows the OCI image spec (layer.md), and treats the archive as hostile.
What is guaranteed:

- nothing outside the layer's directory is created, changed or linked to: every entry is reached
  from a descriptor of the layer's root, one component at a time with ``O_NOFOLLOW``, so no call
  goes through a symbolic link, whatever the archive made earlier; mode, owner and times are set
  on descriptors (``fchmod``/``fchown``/``futimens``: a regular file on the descriptor it was
  written through, a fifo on one opened ``O_NOFOLLOW``), and on a symbolic link itself (never its
  target). A directory's metadata is set last (its times change as entries land in it), on what
  its path is then: one the layer replaced since (by a link, a file, another directory) is
  skipped, and a directory given twice takes its later entry's;
- names are relative to the layer; absolute names are made relative, ``..`` is refused, and an
  entry whose parent is not a directory (a link, a file) is refused;
- a whiteout ``.wh.<name>`` becomes an overlayfs whiteout (a 0/0 character device) unless the
  same layer made ``<name>`` itself (whiteouts only hide lower layers); an opaque whiteout
  ``.wh..wh..opq`` marks its directory opaque (``trusted.overlay.opaque``), whatever its order
  in the archive; a directory made over a whiteout of the same layer is opaque too;
- a hard link must point to a regular file this layer holds at that moment;
- device nodes are refused (a container gets its ``/dev`` from the runtime), as are unknown entry
  types;
- bounds: a layer has at most ``max_entries`` entries; its regular files' bytes are counted
  before they are written, against ``max_layer_bytes`` and against a :class:`Budget` that the
  layers of one build share (a cache's size, a group's ephemeral storage);
- with an expected ``diff_id`` (the image config's ``rootfs.diff_ids[i]``), the sha256 of the
  uncompressed archive, hashed as it flows through extraction, must equal it, or the layer is
  refused (at most 1 MiB may follow the archive's end, hashed and not written); a layer
  already in the store is checked against its recorded ``diff_id`` (one unpacked before the
  store kept records has none, and is taken as it is).

A refused layer leaves nothing: its temporary directory is removed.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import io
import json
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
# Entries one layer may hold. The largest images in common use hold a few hundred thousand files
# in all (a full TeX Live install ~200,000, CUDA/PyTorch images under 150,000); an inode each.
DEFAULT_MAX_ENTRIES = 500_000
DEFAULT_MAX_LAYER_BYTES = 64 << 30
# Bytes an archive may carry after its end-of-archive blocks (writers pad to a 10 KiB record);
# hashed for the diff_id, never written.
_TRAILING_MAX = 1 << 20
_PRIVATE = 0o700
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_KEPT_OPEN = 64  # directories of the current path an unpacking keeps open
_FIFO_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC  # opens at once


class UnsafeLayer(ValueError):
    """The archive asks for something a layer may not do (escape, device node, bad link)."""


class UnsupportedLayer(ValueError):
    """A layer media type this store cannot apply (e.g. zstd)."""


class LayerTooLarge(UnsafeLayer):
    """Unpacking would go past a bound: the layer's entries or bytes, or a build's budget."""


class DiffIdMismatch(UnsafeLayer):
    """The uncompressed layer is not the one the image config names (its ``diff_id``)."""


class Budget:
    """Bytes that the layers of one build (a cache's, or a group's pull) may unpack together.
    Shared by the threads unpacking them; charged before a file's bytes are written."""

    def __init__(self, limit: int, what: str) -> None:
        """``what`` names the bound, e.g. "image cache web's size of 20 GiB"."""
        self.limit = limit
        self.what = what
        self.used = 0
        self._lock = threading.Lock()

    def charge(self, size: int, where: str) -> None:
        """Count ``size`` more bytes; ``where`` (layer and entry) is named when they do not fit."""
        with self._lock:
            if self.used + size > self.limit:
                raise LayerTooLarge(
                    f"unpacked layers exceed {self.what}: {where} would bring them to "
                    f"{self.used + size:,} bytes (at most {self.limit:,})"
                )
            self.used += size


@dataclass(frozen=True)
class Unpacked:
    digest: str
    path: Path
    bytes: int  # bytes of file content written (0 when the layer was already unpacked)
    seconds: float
    reused: bool
    diff_id: str | None = None  # sha256 of the uncompressed archive (None: unknown, see meta)


@dataclass(frozen=True)
class LayerMeta:
    """What the store recorded when it unpacked a layer."""

    diff_id: str
    bytes: int  # bytes of its regular files
    entries: int


def layer_hex(digest: str) -> str:
    match = _DIGEST.fullmatch(digest)
    if match is None:
        raise UnsafeLayer(f"refusing layer digest {digest[:80]!r}: not sha256:<64 hex>")
    return match.group(1)


def _private_dir(path: Path) -> None:
    """``path`` made if missing, and 0700 (an existing one is tightened)."""
    path.mkdir(mode=_PRIVATE, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != _PRIVATE:
        os.chmod(path, _PRIVATE)


class LayerStore:
    def __init__(
        self,
        root: Path,
        max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES,
        fsync: bool = False,
        create: bool = True,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        """``create=False``: only look (nothing is made; a missing store holds nothing).
        ``max_entries``: entries one layer may hold; ``max_layer_bytes``: bytes of its files."""
        self.root = root
        self.fsync = fsync
        self.layers = root / "sha256"
        self.meta = root / "meta"
        self.tmp = root / "tmp"
        self.max_layer_bytes = max_layer_bytes
        self.max_entries = max_entries
        if create:
            for directory in (root, self.layers, self.meta, self.tmp):
                _private_dir(directory)

    def path(self, digest: str) -> Path:
        return self.layers / layer_hex(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).is_dir()

    def recorded(self, digest: str) -> LayerMeta | None:
        """The layer's diff_id and size as recorded when it was unpacked (None for a layer
        unpacked before the store kept them)."""
        try:
            data = json.loads((self.meta / layer_hex(digest)).read_bytes())
            return LayerMeta(str(data["diff_id"]), int(data["bytes"]), int(data["entries"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def check_diff_id(self, digest: str, diff_id: str | None) -> None:
        """Refuse a layer held already whose recorded diff_id is not ``diff_id``."""
        meta = self.recorded(digest)
        if diff_id is not None and meta is not None and meta.diff_id != diff_id:
            raise DiffIdMismatch(_mismatch(digest, meta.diff_id, diff_id))

    def digests(self) -> Iterable[str]:
        if not self.layers.is_dir():
            return
        for path in self.layers.iterdir():
            if _DIGEST.fullmatch(f"sha256:{path.name}"):
                yield f"sha256:{path.name}"

    def unpack(
        self,
        digest: str,
        blob: Path,
        media_type: str | None = None,
        diff_id: str | None = None,
        budget: Budget | None = None,
    ) -> Unpacked:
        """Apply the layer blob at ``blob`` (already verified against ``digest``) once.

        Without a media type, the compression is read from the blob's first bytes. With a
        ``diff_id``, the uncompressed archive must match it (see :meth:`stage`)."""
        started = time.perf_counter()
        if self.has(digest):
            self.check_diff_id(digest, diff_id)
            return Unpacked(digest, self.path(digest), 0, time.perf_counter() - started, True)
        with open(blob, "rb", buffering=0) as raw:
            staged = self.stage(digest, raw, media_type, diff_id, budget)
        return staged.commit()

    def stage(
        self,
        digest: str,
        raw: IO[bytes],
        media_type: str | None = None,
        diff_id: str | None = None,
        budget: Budget | None = None,
    ) -> Staged:
        """Apply the layer read from ``raw`` into a temporary directory; nothing is under the
        digest until :meth:`Staged.commit` (the caller commits once the blob is verified).

        ``diff_id``: what the uncompressed archive's sha256 must be (refused otherwise);
        ``budget``: shared by the layers of one build, charged with this one's bytes."""
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
            limits = _Limits(self.max_layer_bytes, self.max_entries, budget)
            meta = _apply(stream, temp, limits, digest)
            if diff_id is not None and meta.diff_id != diff_id:
                raise DiffIdMismatch(_mismatch(digest, meta.diff_id, diff_id))
        except BaseException:
            _remove_tree(temp)
            raise
        return Staged(digest, temp, final, meta, started, self.fsync, self.meta)

    def feed(self, digest: str, diff_id: str | None = None, budget: Budget | None = None) -> Feed:
        """A :class:`Feed` unpacking this layer from the bytes written to it."""
        return Feed(self, digest, diff_id, budget)

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
        doomed = self.detach(digest)
        if doomed is not None:
            _remove_tree(doomed)

    def detach(self, digest: str) -> Path | None:
        """Take the layer out of the store at once (a rename: a half-removed directory must
        never look like a whole layer), then its metadata; returns the directory to remove (a
        temporary one, which :meth:`remove_stale_temp_dirs` removes should this process die
        first), or None when the store does not hold the layer."""
        doomed: Path | None = self.tmp / f"{os.getpid()}-rm-{secrets.token_hex(6)}"
        try:
            os.rename(self.path(digest), doomed)
        except FileNotFoundError:
            doomed = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.meta / layer_hex(digest))
        return doomed

    @staticmethod
    def remove_detached(directory: Path) -> None:
        _remove_tree(directory)

    def remove_stale_temp_dirs(self, alive: Callable[[int], bool]) -> int:
        removed = 0
        for temp in self.tmp.iterdir():
            pid = temp.name.split("-", 1)[0]
            if pid.isdigit() and not alive(int(pid)):
                _remove_tree(temp)
                removed += 1
        return removed


def _mismatch(digest: str, actual: str, expected: str) -> str:
    return (
        f"layer {digest[:19]}: its uncompressed content is {actual[:19]}, not the diff_id "
        f"{expected[:19]} the image config names for it"
    )


class Staged:
    """A layer applied into a temporary directory, waiting to be committed or discarded."""

    def __init__(
        self,
        digest: str,
        temp: Path,
        final: Path,
        meta: LayerMeta,
        started: float,
        fsync: bool,
        meta_dir: Path,
    ) -> None:
        self.digest = digest
        self.temp = temp
        self.final = final
        self.meta = meta
        self.written = meta.bytes
        self.started = started
        self.fsync = fsync
        self.meta_dir = meta_dir

    def commit(self) -> Unpacked:
        """Rename into place; a layer another process finished first is kept, this one goes.
        Its record is written first: a whole layer always has one."""
        try:
            self._record()
            if self.fsync:
                _flush_tree(self.temp)
            os.rename(self.temp, self.final)
            if self.fsync:
                _flush(self.final.parent)
        except OSError:
            if not self.final.is_dir():
                raise
            return Unpacked(
                self.digest,
                self.final,
                0,
                time.perf_counter() - self.started,
                True,
                self.meta.diff_id,
            )
        finally:
            self.discard()
        return Unpacked(
            self.digest,
            self.final,
            self.written,
            time.perf_counter() - self.started,
            False,
            self.meta.diff_id,
        )

    def _record(self) -> None:
        name = layer_hex(self.digest)
        record = self.meta_dir / f".{name}.{os.getpid()}-{secrets.token_hex(4)}"
        body = {"diff_id": self.meta.diff_id, "bytes": self.meta.bytes}
        record.write_text(json.dumps(body | {"entries": self.meta.entries}))
        if self.fsync:
            _flush(record)
        os.replace(record, self.meta_dir / name)

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

    def __init__(
        self,
        store: LayerStore,
        digest: str,
        diff_id: str | None = None,
        budget: Budget | None = None,
    ) -> None:
        self.store = store
        self.digest = digest
        self.diff_id = diff_id
        self.budget = budget
        self._chunks = _Chunks()
        self._staged: Staged | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"unpack-{digest[7:19]}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            self._staged = self.store.stage(
                self.digest,
                self._chunks,  # type: ignore[arg-type]
                diff_id=self.diff_id,
                budget=self.budget,
            )
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
    file as they are (tarfile's stream mode copied every byte several times on the way). Every
    byte of the uncompressed archive is hashed as it passes (its diff_id)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.pos = 0
        self.chunk = memoryview(b"")
        self.hasher = hashlib.sha256()

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
            data = self.raw.read(_CHUNK)
            self.hasher.update(data)  # large pieces: hashlib lets go of the GIL meanwhile
            self.chunk = memoryview(data)
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

    def finish(self, most: int) -> str:
        """Read what follows the archive's end (at most ``most`` bytes, else ReadError) and
        return the sha256 of everything read."""
        left = most + 1
        while left > 0 and (piece := self._next(left)):
            left -= len(piece)
        if left <= 0:
            raise tarfile.ReadError(f"more than {most} bytes follow the end of the archive")
        return "sha256:" + self.hasher.hexdigest()


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


@dataclass(frozen=True)
class _Limits:
    layer_bytes: int
    entries: int
    budget: Budget | None


class _Applier:
    """Applies the entries of one archive under the directory open at ``root_fd``: every path is
    reached from there by descriptor, one component at a time, never through a link."""

    def __init__(self, root_fd: int, limits: _Limits, digest: str) -> None:
        self.root_fd = root_fd
        self.limits = limits
        self.digest = digest
        self.written = 0
        self.entries = 0
        self.made: set[tuple[str, ...]] = set()  # paths this layer created
        self.whiteouts: set[tuple[str, ...]] = set()  # whiteout devices this layer created
        # Directories whose metadata is set last: the entry, and the inode it made.
        self.dir_attrs: dict[tuple[str, ...], tuple[tarfile.TarInfo, int]] = {}
        # The directories from the root down to the last entry's parent, kept open (entries of
        # one directory come together, and the next is often a sibling's): a new parent walks
        # from the deepest one it shares. None of them is removed meanwhile: an entry removes
        # only what is under its own parent, and before it does, the chain is cut to that
        # parent's. A path deeper than _KEPT_OPEN keeps its rest in ``_deep`` (the last one).
        self._chain: list[tuple[str, int]] = []
        self._deep: int | None = None

    def fail(self, name: str, why: str) -> UnsafeLayer:
        return UnsafeLayer(f"layer {self.digest[:19]}: entry {name[:200]!r} {why}")

    def close(self) -> None:
        if self._deep is not None:
            os.close(self._deep)
            self._deep = None
        while self._chain:
            os.close(self._chain.pop()[1])

    def parent(self, parts: tuple[str, ...], name: str) -> int:
        """A descriptor of the parent directory of ``parts`` (the applier's: not to be closed),
        its missing directories made; refused when one is not a directory (a link, a file)."""
        wanted = parts[:-1]
        if self._deep is not None:
            os.close(self._deep)
            self._deep = None
        shared = 0
        for (part, _), want in zip(self._chain, wanted, strict=False):
            if part != want:
                break
            shared += 1
        while len(self._chain) > shared:
            os.close(self._chain.pop()[1])
        here = self._chain[-1][1] if self._chain else self.root_fd
        for depth in range(shared, len(wanted)):
            inner = self._enter(here, wanted[depth], wanted[: depth + 1], name)
            if self._deep is not None:
                os.close(self._deep)  # ``here``: a directory deeper than the chain keeps
                self._deep = None
            if depth < _KEPT_OPEN:
                self._chain.append((wanted[depth], inner))
            else:
                self._deep = inner
            here = inner
        return here

    def _enter(self, at: int, part: str, sub: tuple[str, ...], name: str) -> int:
        try:
            return os.open(part, _DIR_FLAGS, dir_fd=at)
        except FileNotFoundError:
            os.mkdir(part, 0o755, dir_fd=at)
            return os.open(part, _DIR_FLAGS, dir_fd=at)
        except OSError as err:
            if err.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
        mode = os.stat(part, dir_fd=at, follow_symlinks=False).st_mode
        if not (stat.S_ISCHR(mode) and sub in self.whiteouts):
            raise self.fail(name, "has a parent that is not a directory (a link?)")
        # A directory of this layer under a path it whited out: replace the whiteout.
        os.unlink(part, dir_fd=at)
        os.mkdir(part, 0o755, dir_fd=at)
        fd = os.open(part, _DIR_FLAGS, dir_fd=at)
        _set_opaque(fd)
        self.whiteouts.discard(sub)
        return fd

    def _existing_dir(self, parts: tuple[str, ...]) -> int | None:
        """A descriptor of the directory at ``parts`` as it is now, reached without a link;
        None when the path is gone or is not that (the caller closes it)."""
        here = self.root_fd
        try:
            for part in parts:
                try:
                    inner = os.open(part, _DIR_FLAGS, dir_fd=here)
                except OSError as err:
                    if err.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                        return None
                    raise
                if here != self.root_fd:
                    os.close(here)
                here = inner
        except BaseException:
            if here != self.root_fd:
                os.close(here)
            raise
        return os.dup(here) if here == self.root_fd else here

    def clear(self, at: int, base: str, keep_dir: bool) -> bool:
        """Make room for a new entry ``base`` in the directory ``at``; True when it was a
        whiteout of this layer."""
        try:
            mode = os.stat(base, dir_fd=at, follow_symlinks=False).st_mode
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(mode):
            if keep_dir:
                return False
            shutil.rmtree(base, dir_fd=at)
            return False
        os.unlink(base, dir_fd=at)
        return stat.S_ISCHR(mode)

    def apply(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        self.entries += 1
        if self.entries > self.limits.entries:
            raise LayerTooLarge(
                f"layer {self.digest[:19]}: more than {self.limits.entries:,} entries "
                "(the limit per layer)"
            )
        parts = _relative(member.name, self.digest)
        if not parts:
            return  # the layer root itself
        base = parts[-1]
        if base == OPAQUE:
            _set_opaque(self.parent(parts, member.name))
            return
        if base.startswith(WHITEOUT):
            target = (*parts[:-1], base[len(WHITEOUT) :])
            if not target[-1] or target[-1] in (".", ".."):
                raise self.fail(member.name, "is a whiteout of nothing")
            if target in self.made:
                return  # whiteouts hide lower layers only
            at = self.parent(target, member.name)
            self.clear(at, target[-1], keep_dir=False)
            os.mknod(target[-1], stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=at)
            self.whiteouts.add(target)
            return
        if member.ischr() or member.isblk():
            raise self.fail(member.name, "is a device node: refused")
        at = self.parent(parts, member.name)
        if member.isdir():
            replaced = self.clear(at, base, keep_dir=True)
            with contextlib.suppress(FileExistsError):
                os.mkdir(base, 0o755, dir_fd=at)
            fd = os.open(base, _DIR_FLAGS, dir_fd=at)
            try:
                if replaced and parts in self.whiteouts:
                    _set_opaque(fd)  # the lower directory was removed, this one replaces it
                self.dir_attrs[parts] = (member, os.fstat(fd).st_ino)
            finally:
                os.close(fd)
        elif member.isreg():
            self.clear(at, base, keep_dir=False)
            self.count(member.size, member.name)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(base, flags, 0o600, dir_fd=at)
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
                _set_attrs(out.fileno(), member)
        elif member.issym():
            self.clear(at, base, keep_dir=False)
            os.symlink(member.linkname, base, dir_fd=at)
            # The link itself, never what it points to.
            os.chown(base, member.uid, member.gid, dir_fd=at, follow_symlinks=False)
            with contextlib.suppress(OSError):
                times = (member.mtime, member.mtime)
                os.utime(base, times, dir_fd=at, follow_symlinks=False)
        elif member.islnk():
            self.hard_link(member, at, base)
        elif member.isfifo():
            self.clear(at, base, keep_dir=False)
            os.mkfifo(base, 0o600, dir_fd=at)
            fd = os.open(
                base, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=at
            )
            try:
                _set_attrs(fd, member)
            finally:
                os.close(fd)
        else:
            raise self.fail(member.name, f"has an unsupported type {member.type!r}")
        self.made.add(parts)
        self.whiteouts.discard(parts)

    def hard_link(self, member: tarfile.TarInfo, at: int, base: str) -> None:
        link = _relative(member.linkname, self.digest)
        if link not in self.made:
            raise self.fail(
                member.name,
                f"is a hard link to {member.linkname[:200]!r}, which this layer does not hold",
            )
        source = self._existing_dir(link[:-1])
        if source is None:
            raise self.fail(member.name, "is a hard link to something this layer replaced")
        try:
            mode = os.stat(link[-1], dir_fd=source, follow_symlinks=False).st_mode
            if not stat.S_ISREG(mode):
                raise self.fail(member.name, "is a hard link to something not a regular file")
            self.clear(at, base, keep_dir=False)
            os.link(link[-1], base, src_dir_fd=source, dst_dir_fd=at, follow_symlinks=False)
        finally:
            os.close(source)

    def count(self, size: int, name: str) -> None:
        self.written += size
        if self.written > self.limits.layer_bytes:
            raise LayerTooLarge(
                f"layer {self.digest[:19]}: entry {name[:200]!r} takes the layer over "
                f"{self.limits.layer_bytes:,} bytes unpacked"
            )
        if self.limits.budget is not None:
            where = f"layer {self.digest[:19]} entry {name[:200]!r} ({size:,} bytes)"
            self.limits.budget.charge(size, where)

    def finish(self) -> None:
        """Directories' metadata, deepest first (their times change as entries land in them),
        each on what its path is now: a directory the layer replaced since is skipped."""
        self.close()
        for parts, (member, inode) in sorted(self.dir_attrs.items(), key=lambda kv: -len(kv[0])):
            fd = self._existing_dir(parts)
            if fd is None:
                continue
            try:
                if os.fstat(fd).st_ino == inode:
                    _set_attrs(fd, member)
            finally:
                os.close(fd)


def _set_attrs(fd: int, member: tarfile.TarInfo) -> None:
    """Owner, then mode (a change of owner clears setuid bits), then times, on a descriptor."""
    os.fchown(fd, member.uid, member.gid)
    os.fchmod(fd, member.mode & 0o7777)
    with contextlib.suppress(OSError):
        os.utime(fd, (member.mtime, member.mtime))


def _set_opaque(fd: int) -> None:
    os.setxattr(fd, OPAQUE_XATTR, b"y")


def _apply(stream: IO[bytes], root: Path, limits: _Limits, digest: str) -> LayerMeta:
    root_fd = os.open(root, _DIR_FLAGS)
    applier = _Applier(root_fd, limits, digest)
    try:
        forward = _Forward(stream)
        try:
            with tarfile.open(fileobj=forward, mode="r:") as tar:  # type: ignore[call-overload]
                for member in tar:
                    applier.apply(member, tar)
            diff_id = forward.finish(_TRAILING_MAX)
        except (tarfile.TarError, EOFError, gzip.BadGzipFile, isal_zlib.error) as err:
            raise UnsafeLayer(f"layer {digest[:19]}: not a valid layer archive ({err})") from None
        applier.finish()
    finally:
        applier.close()
        os.close(root_fd)
    return LayerMeta(diff_id, applier.written, applier.entries)
