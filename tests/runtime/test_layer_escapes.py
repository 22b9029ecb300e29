"""A crafted layer cannot touch the host while it is unpacked: each archive below first makes an
entry whose metadata is applied late (a directory's, at the end) or by path, then replaces that
path, or a parent of it, with a symbolic link to a host file or directory. The host's files are
made by the test outside the layer store, with a known mode, owner and time; the kernel's
``lstat`` of them after the unpack is the oracle."""

import os
import stat
import tarfile
from pathlib import Path

import pytest

from eci_imagecache.runtime.layers import OPAQUE_XATTR, LayerStore, UnsafeLayer

from .conftest import entry, layer_bytes

DIGEST = "sha256:" + "e" * 64
HOST_UID, HOST_GID = 4321, 4322
HOST_MTIME = 1_234_567_890


def owned(item, uid: int = 0, gid: int = 0, mtime: int = 0, mode: int | None = None):
    """An entry with this owner, time (and mode)."""
    info, data = item
    info.uid, info.gid, info.mtime = uid, gid, mtime
    if mode is not None:
        info.mode = mode
    return info, data


def host_made(path: Path, mode: int, directory: bool = False) -> Path:
    if directory:
        path.mkdir()
    else:
        path.write_bytes(b"host secret\n")
    os.chown(path, HOST_UID, HOST_GID)
    os.chmod(path, mode)
    os.utime(path, (HOST_MTIME, HOST_MTIME))
    return path


def seen(path: Path) -> dict:
    """What the host sees of ``path``: its metadata, links, extended attributes, entries."""
    info = os.lstat(path)
    return {
        "mode": stat.filemode(info.st_mode),
        "owner": (info.st_uid, info.st_gid),
        "mtime": info.st_mtime_ns,
        "links": info.st_nlink,
        "xattrs": sorted(os.listxattr(path, follow_symlinks=False)),
        "entries": sorted(os.listdir(path)) if stat.S_ISDIR(info.st_mode) else None,
    }


@pytest.fixture
def host(tmp_path: Path, layers: LayerStore) -> Path:
    """A host directory beside the layer store: ``file`` (-rw-------), ``dir/`` with ``b/``
    and ``f`` inside, all owned by 4321:4322."""
    root = tmp_path / "host"
    root.mkdir()
    host_made(root / "file", 0o600)
    host_made(root / "dir", 0o755, directory=True)
    host_made(root / "dir" / "f", 0o600)
    host_made(root / "dir" / "b", 0o700, directory=True)
    os.utime(root / "dir", (HOST_MTIME, HOST_MTIME))  # its entries changed it
    assert not (root / "dir").is_relative_to(layers.root)
    return root


def host_state(host: Path) -> dict:
    return {name: seen(host / name) for name in ("file", "dir", "dir/f", "dir/b")}


def unpack(layers: LayerStore, tmp_path: Path, entries) -> Path:
    blob = tmp_path / "crafted.blob"
    blob.write_bytes(layer_bytes(entries))
    return layers.unpack(DIGEST, blob).path


# What the deferred directory entry asks for, one difference from the host target at a time.
ASKS = {
    "chmod": dict(mode=0o4777, uid=HOST_UID, gid=HOST_GID, mtime=HOST_MTIME),
    "chown": dict(mode=0o700, uid=0, gid=0, mtime=HOST_MTIME),
    "utime": dict(mode=0o700, uid=HOST_UID, gid=HOST_GID, mtime=0),
}


@pytest.mark.parametrize("ask", ASKS, ids=list(ASKS))
def test_a_directory_replaced_by_a_link_to_a_host_file_leaves_the_file_alone(
    layers, tmp_path, host, ask
):
    # The attack found on 2026-12-06: x/ 04777, then x -> a host file.
    before = host_state(host)
    root = unpack(
        layers,
        tmp_path,
        [
            owned(entry("x/", tarfile.DIRTYPE), **ASKS[ask]),
            entry("x", tarfile.SYMTYPE, link=str(host / "file")),
        ],
    )
    assert host_state(host) == before
    assert os.readlink(root / "x") == str(host / "file")  # the layer holds the link itself


@pytest.mark.parametrize("ask", ASKS, ids=list(ASKS))
def test_a_directory_whose_parent_becomes_a_link_to_a_host_directory_leaves_it_alone(
    layers, tmp_path, host, ask
):
    # a/b/'s metadata is applied at the end; by then a -> the host's dir, which holds b/.
    before = host_state(host)
    root = unpack(
        layers,
        tmp_path,
        [
            entry("a/", tarfile.DIRTYPE, mode=0o755),
            owned(entry("a/b/", tarfile.DIRTYPE), **ASKS[ask]),
            entry("a", tarfile.SYMTYPE, link=str(host / "dir")),
        ],
    )
    assert host_state(host) == before
    assert os.path.islink(root / "a")


def test_a_directory_replaced_by_a_file_or_another_directory_keeps_the_later_metadata(
    layers, tmp_path
):
    root = unpack(
        layers,
        tmp_path,
        [
            owned(entry("d/", tarfile.DIRTYPE), mode=0o4777, uid=5, gid=5, mtime=5),
            entry("d", data=b"now a file", mode=0o640),
            owned(entry("d/", tarfile.DIRTYPE), mode=0o750, uid=7, gid=8, mtime=12345),
            entry("d/inside", data=b"x"),
            owned(entry("kept/", tarfile.DIRTYPE), mode=0o2750, uid=9, gid=10, mtime=6789),
        ],
    )
    for name, mode, owner, mtime in (("d", 0o750, (7, 8), 12345), ("kept", 0o2750, (9, 10), 6789)):
        info = os.lstat(root / name)
        assert stat.S_ISDIR(info.st_mode)
        assert (stat.S_IMODE(info.st_mode), (info.st_uid, info.st_gid)) == (mode, owner)
        assert info.st_mtime == mtime


def test_a_link_made_over_a_directory_gets_the_owner_and_time_of_its_entry_not_its_target(
    layers, tmp_path, host
):
    before = host_state(host)
    root = unpack(
        layers,
        tmp_path,
        [owned(entry("l", tarfile.SYMTYPE, link=str(host / "file")), uid=11, gid=12, mtime=77)],
    )
    assert host_state(host) == before
    link = os.lstat(root / "l")
    assert (link.st_uid, link.st_gid, link.st_mtime) == (11, 12, 77)


@pytest.mark.parametrize(
    "last",
    [
        entry("x/.wh..wh..opq"),  # opaque marking: an xattr on the host directory
        entry("x/.wh.f"),  # a whiteout: the host's f removed, a device made there
        entry("x/new", data=b"written"),
        entry("x/g", tarfile.LNKTYPE, link="made"),
    ],
    ids=["opaque-xattr", "whiteout", "file", "hard-link"],
)
def test_nothing_is_made_or_marked_through_a_directory_replaced_by_a_host_link(
    layers, tmp_path, host, last
):
    before = host_state(host)
    with pytest.raises(UnsafeLayer, match="parent that is not a directory"):
        unpack(
            layers,
            tmp_path,
            [
                entry("made", data=b"m"),
                entry("x/", tarfile.DIRTYPE, mode=0o755),
                entry("x", tarfile.SYMTYPE, link=str(host / "dir")),
                last,
            ],
        )
    assert host_state(host) == before
    assert OPAQUE_XATTR not in os.listxattr(host / "dir")
    assert not layers.has(DIGEST) and list(layers.tmp.iterdir()) == []


@pytest.mark.parametrize(
    "entries",
    [
        # a file of the layer, then replaced by a link to the host's file, then linked to
        [
            entry("f", data=b"mine"),
            entry("f", tarfile.SYMTYPE, link="{host}/file"),
            entry("h", tarfile.LNKTYPE, link="f"),
        ],
        # a file under a directory of the layer, whose directory then points at the host's
        [
            entry("d/f", data=b"mine"),
            entry("d", tarfile.SYMTYPE, link="{host}/dir"),
            entry("h", tarfile.LNKTYPE, link="d/f"),
        ],
    ],
    ids=["replaced-file", "replaced-parent"],
)
def test_a_hard_link_to_a_path_the_layer_replaced_with_a_host_link_is_refused(
    layers, tmp_path, host, entries
):
    for info, _ in entries:
        info.linkname = info.linkname.replace("{host}", str(host))
    before = host_state(host)
    with pytest.raises(UnsafeLayer):
        unpack(layers, tmp_path, entries)
    assert host_state(host) == before  # the host file's link count included


def test_a_fifo_made_where_a_host_link_was_is_the_layers_own(layers, tmp_path, host):
    before = host_state(host)
    root = unpack(
        layers,
        tmp_path,
        [
            owned(entry("p/", tarfile.DIRTYPE), mode=0o4777),
            entry("p", tarfile.SYMTYPE, link=str(host / "file")),
            owned(entry("p", tarfile.FIFOTYPE), mode=0o4666, uid=13, gid=14, mtime=99),
        ],
    )
    assert host_state(host) == before
    fifo = os.lstat(root / "p")
    assert stat.S_ISFIFO(fifo.st_mode) and stat.S_IMODE(fifo.st_mode) == 0o4666
    assert (fifo.st_uid, fifo.st_gid, fifo.st_mtime) == (13, 14, 99)


def test_a_fifo_under_a_parent_linked_to_the_host_is_refused(layers, tmp_path, host):
    before = host_state(host)
    with pytest.raises(UnsafeLayer, match="parent that is not a directory"):
        unpack(
            layers,
            tmp_path,
            [
                entry("a", tarfile.SYMTYPE, link=str(host / "dir")),
                owned(entry("a/p", tarfile.FIFOTYPE), mode=0o4666),
            ],
        )
    assert host_state(host) == before


def test_paths_deeper_than_the_descriptors_kept_open_are_walked_the_same_way(
    layers, tmp_path, host
):
    deep = "/".join(f"d{n}" for n in range(100))  # the applier keeps 64 levels open
    before = host_state(host)
    fds = len(os.listdir("/proc/self/fd"))
    root = unpack(
        layers,
        tmp_path,
        [
            entry(f"{deep}/one", data=b"1"),
            entry(f"{deep}/two", data=b"2"),
            entry("d0/d1/side", data=b"s"),
            entry(f"{deep}/three", data=b"3"),
            owned(entry(f"{deep}/", tarfile.DIRTYPE), mode=0o4777),
        ],
    )
    assert [(root / deep / n).read_bytes() for n in ("one", "two", "three")] == [b"1", b"2", b"3"]
    assert stat.S_IMODE((root / deep).stat().st_mode) == 0o4777
    layers.remove(DIGEST)
    with pytest.raises(UnsafeLayer, match="parent that is not a directory"):
        unpack(
            layers,
            tmp_path,
            [
                entry(f"{deep}/one", data=b"1"),
                entry(f"{deep[:-4]}", tarfile.SYMTYPE, link=str(host / "dir")),
                entry(f"{deep}/f", data=b"through the link"),
            ],
        )
    assert host_state(host) == before
    assert len(os.listdir("/proc/self/fd")) == fds  # every descriptor closed
