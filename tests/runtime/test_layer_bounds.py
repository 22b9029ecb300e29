"""What an image can make while it is unpacked is bounded: the bytes of a build's layers (one
budget shared by the layers unpacking at once), the entries of one layer, and each layer is the
one its image config names (its diff_id: the sha256 of the uncompressed archive, as the OCI image
spec defines it, computed here with hashlib over the archive the test wrote). The store's
directories are root's alone."""

import hashlib
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from isal import isal_zlib

from eci_imagecache.runtime.layers import (
    Budget,
    DiffIdMismatch,
    LayerStore,
    LayerTooLarge,
    UnsafeLayer,
)

from .conftest import entry, layer_bytes

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
MIB = 1 << 20


def nothing_left(layers: LayerStore, *digests: str) -> None:
    assert not any(layers.has(d) for d in digests)
    assert list(layers.tmp.iterdir()) == []


def gzip_bomb(path: Path, size: int) -> int:
    """A gzip layer holding one file of ``size`` zero bytes, written in pieces; returns the
    compressed size."""
    info = tarfile.TarInfo("bomb")
    info.size = size
    deflate = isal_zlib.compressobj(3, isal_zlib.DEFLATED, 16 + isal_zlib.MAX_WBITS)
    zeros = bytes(MIB)
    with open(path, "wb") as out:
        out.write(deflate.compress(info.tobuf(format=tarfile.GNU_FORMAT)))
        for _ in range(size // MIB):
            out.write(deflate.compress(zeros))
        out.write(deflate.compress(bytes(1024)))  # the end-of-archive blocks
        out.write(deflate.flush())
    return path.stat().st_size


def test_a_small_gzip_that_inflates_to_a_gibibyte_is_refused_by_its_budget(layers, tmp_path):
    blob = tmp_path / "bomb.gz"
    assert gzip_bomb(blob, 1 << 30) < 5 * MIB  # the size of the 2026-12-06 finding's bomb
    budget = Budget(64 * MIB, "image cache tiny's size of 64 MiB")
    with pytest.raises(LayerTooLarge) as refused:
        layers.unpack(DIGEST_A, blob, budget=budget)
    message = str(refused.value)
    assert "exceed image cache tiny's size of 64 MiB" in message
    assert "'bomb'" in message and f"{1 << 30:,} bytes" in message
    assert budget.used == 0  # refused before a byte of it was written
    nothing_left(layers, DIGEST_A)


def test_one_budget_is_shared_by_the_layers_unpacking_at_once(layers):
    # Four 2 MiB layers fed side by side against 5 MiB: two fit, two are refused.
    datas = [layer_bytes([entry(f"f{i}", data=os.urandom(2 * MIB))]) for i in range(4)]
    digests = [f"sha256:{i}" + "c" * 63 for i in range(4)]
    budget = Budget(5 * MIB, "container group g's ephemeral storage of 5 MiB")
    outcomes: dict[int, object] = {}

    def feed(i: int) -> None:
        fed = layers.feed(digests[i], budget=budget)
        for start in range(0, len(datas[i]), 65536):
            fed.write(datas[i][start : start + 65536])
        try:
            outcomes[i] = fed.close(verified=True)
        except LayerTooLarge as err:
            outcomes[i] = err

    threads = [threading.Thread(target=feed, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    refused = [o for o in outcomes.values() if isinstance(o, LayerTooLarge)]
    kept = [d for d in digests if layers.has(d)]
    assert len(refused) == 2 and len(kept) == 2
    assert all("ephemeral storage of 5 MiB" in str(err) for err in refused)
    assert budget.used == 4 * MIB == sum(layers.size(d) for d in kept)
    assert list(layers.tmp.iterdir()) == []


def many_entries(count: int) -> bytes:
    """A plain tar of ``count`` empty files ``dNNN/NNNNNN``: tarfile's header for the first,
    renamed for each of the others (tarfile takes seconds to write 200,000 headers)."""
    first = bytearray(tarfile.TarInfo("d000/000000").tobuf(format=tarfile.USTAR_FORMAT))
    first[148:156] = b" " * 8  # the checksum counts its own field as spaces
    rest = sum(first) - sum(first[0:11])
    middle, tail = bytes(first[11:148]), bytes(first[156:])
    headers = []
    for n in range(count):
        name = f"d{n // 1000:03d}/{n:06d}".encode()
        headers.append(name + middle + b"%06o\0 " % (rest + sum(name)) + tail)
    return b"".join(headers) + bytes(1024)


def test_a_layer_of_200000_entries_is_refused_past_the_cap(tmp_path):
    layers = LayerStore(tmp_path / "capped", max_entries=10_000)
    blob = tmp_path / "entries.tar"
    blob.write_bytes(many_entries(200_000))
    with pytest.raises(LayerTooLarge, match="more than 10,000 entries"):
        layers.unpack(DIGEST_A, blob)
    nothing_left(layers, DIGEST_A)


def test_a_layer_at_the_cap_is_unpacked(tmp_path):
    layers = LayerStore(tmp_path / "capped", max_entries=1_000 + 1)  # 1,000 files, 1 directory
    blob = tmp_path / "entries.tar"
    blob.write_bytes(many_entries(1_000))
    root = layers.unpack(DIGEST_A, blob).path
    assert len(list((root / "d000").iterdir())) == 1_000


def test_the_default_cap_holds_the_largest_images_in_common_use():
    # A full TeX Live install is ~200,000 files in one layer; CUDA/PyTorch images fewer.
    assert LayerStore(Path("/nonexistent"), create=False).max_entries >= 400_000


# diff_ids --------------------------------------------------------------------------------------


def diff_id(archive: bytes) -> str:
    return "sha256:" + hashlib.sha256(archive).hexdigest()


ENTRIES = [entry("etc/os-release", data=b"ID=test\n"), entry("bin/", tarfile.DIRTYPE, mode=0o755)]


def test_a_layer_is_unpacked_only_as_the_diff_id_its_config_names(layers, tmp_path):
    archive = layer_bytes(ENTRIES, compress=False)
    other = layer_bytes([entry("etc/os-release", data=b"ID=evil\n")], compress=False)
    blob = tmp_path / "blob"
    blob.write_bytes(layer_bytes(ENTRIES))  # gzip of the same archive
    with pytest.raises(DiffIdMismatch, match="not the diff_id"):
        layers.unpack(DIGEST_A, blob, diff_id=diff_id(other))
    nothing_left(layers, DIGEST_A)
    done = layers.unpack(DIGEST_A, blob, diff_id=diff_id(archive))
    assert done.diff_id == diff_id(archive)  # tarfile's zero padding to 10 KiB included
    recorded = layers.recorded(DIGEST_A)
    assert recorded is not None and recorded.diff_id == diff_id(archive)
    assert recorded.bytes == len(b"ID=test\n") and recorded.entries == 2


def test_a_fed_layer_is_refused_when_its_diff_id_does_not_match(layers):
    data = layer_bytes([entry("f", data=os.urandom(3 * MIB))])
    feed = layers.feed(DIGEST_A, diff_id="sha256:" + "0" * 64)
    for start in range(0, len(data), 7919):
        feed.write(data[start : start + 7919])
    with pytest.raises(DiffIdMismatch):
        feed.close(verified=True)
    nothing_left(layers, DIGEST_A)


def test_a_layer_held_already_is_checked_against_its_recorded_diff_id(layers, tmp_path):
    archive = layer_bytes(ENTRIES, compress=False)
    blob = tmp_path / "blob"
    blob.write_bytes(archive)
    layers.unpack(DIGEST_A, blob, diff_id=diff_id(archive))
    assert layers.unpack(DIGEST_A, blob, diff_id=diff_id(archive)).reused
    with pytest.raises(DiffIdMismatch):
        layers.unpack(DIGEST_A, blob, diff_id="sha256:" + "1" * 64)
    layers.remove(DIGEST_A)
    assert layers.recorded(DIGEST_A) is None


def test_bytes_after_the_archive_count_in_its_diff_id_and_are_bounded(layers, tmp_path):
    archive = layer_bytes(ENTRIES, compress=False)
    padded = archive + bytes(64 * 1024)
    blob = tmp_path / "padded"
    blob.write_bytes(padded)
    assert layers.unpack(DIGEST_A, blob, diff_id=diff_id(padded)).diff_id == diff_id(padded)
    blob.write_bytes(archive + bytes(2 * MIB))
    with pytest.raises(UnsafeLayer, match="follow the end of the archive"):
        layers.unpack(DIGEST_B, blob)
    nothing_left(layers, DIGEST_B)


# the store's directories -------------------------------------------------------------------------


@pytest.fixture
def reachable_dir() -> Iterator[Path]:
    """A directory any local user can reach (``/tmp/...``, 0755), as ECI_IMAGECACHE_HOME may
    be; pytest's own temporary directories are root's alone."""
    path = Path(tempfile.mkdtemp(prefix="eci-layers-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def other_user_can_read(path: Path) -> bool:
    """Whether ``nobody`` (uid 65534) can read ``path``: the kernel answers."""
    return subprocess.run(["cat", str(path)], user=65534, capture_output=True).returncode == 0


def test_a_setuid_file_in_the_layer_store_is_out_of_other_users_reach(layers, reachable_dir):
    store = LayerStore(reachable_dir / "layers")
    blob = reachable_dir / "blob"
    blob.write_bytes(layer_bytes([entry("bin/su", data=b"#!/bin/sh\nid\n", mode=0o4755)]))
    blob.chmod(0o644)
    assert other_user_can_read(blob)  # the place itself is reachable
    tool = store.unpack(DIGEST_A, blob).path / "bin/su"
    assert stat.S_IMODE(tool.stat().st_mode) == 0o4755
    assert not other_user_can_read(tool)
    for directory in (store.root, store.layers, store.meta, store.tmp):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_an_existing_store_is_tightened_when_opened(reachable_dir):
    for sub in ("layers", "layers/sha256", "layers/tmp"):
        (reachable_dir / sub).mkdir(mode=0o755)
        (reachable_dir / sub).chmod(0o755)
    LayerStore(reachable_dir / "layers")
    assert stat.S_IMODE((reachable_dir / "layers").stat().st_mode) == 0o700
    assert stat.S_IMODE((reachable_dir / "layers/sha256").stat().st_mode) == 0o700
    LayerStore(reachable_dir / "view", create=False)  # a view makes nothing
    assert not (reachable_dir / "view").exists()
