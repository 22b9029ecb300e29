"""The layer store against the OCI image spec's changeset rules, and against the kernel's
overlayfs (the merged view of real overlay mounts is the oracle for whiteouts)."""

import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from eci_imagecache.runtime.layers import OPAQUE_XATTR, LayerStore, UnsafeLayer, UnsupportedLayer

from .conftest import entry, layer_bytes

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def unpack(layers: LayerStore, tmp_path: Path, digest: str, entries, **kw) -> Path:
    blob = tmp_path / f"{digest[7:15]}.blob"
    blob.write_bytes(layer_bytes(entries, **kw))
    return layers.unpack(digest, blob).path


def test_files_directories_links_and_modes_are_applied(layers, tmp_path):
    root = unpack(
        layers,
        tmp_path,
        DIGEST_A,
        [
            entry("./etc/", tarfile.DIRTYPE, mode=0o755),
            entry("./etc/app.conf", data=b"port=80\n", mode=0o600),
            entry("./bin/tool", data=b"#!/bin/sh\n", mode=0o755),
            entry("./bin/alias", tarfile.SYMTYPE, link="tool"),
            entry("./bin/hard", tarfile.LNKTYPE, link="./bin/tool"),
        ],
    )
    assert (root / "etc/app.conf").read_bytes() == b"port=80\n"
    assert stat.S_IMODE((root / "etc/app.conf").stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "bin/tool").stat().st_mode) == 0o755
    assert os.readlink(root / "bin/alias") == "tool"
    assert (root / "bin/hard").stat().st_ino == (root / "bin/tool").stat().st_ino
    assert root == layers.path(DIGEST_A)


def test_a_layer_is_unpacked_once(layers, tmp_path):
    unpack(layers, tmp_path, DIGEST_A, [entry("f", data=b"1")])
    again = layers.unpack(DIGEST_A, tmp_path / "missing-blob-not-read")
    assert again.reused and again.bytes == 0


@pytest.mark.parametrize(
    "entries",
    [
        [entry("../escape", data=b"x")],
        [entry("a/../../escape", data=b"x")],
        [entry("link", tarfile.SYMTYPE, link="/tmp"), entry("link/escape", data=b"x")],
        [entry("dev", tarfile.CHRTYPE)],
        [entry("blk", tarfile.BLKTYPE)],
        [entry("hard", tarfile.LNKTYPE, link="etc/passwd")],  # not in this layer
        [entry("hard", tarfile.LNKTYPE, link="../../etc/passwd")],
    ],
    ids=[
        "dotdot",
        "nested-dotdot",
        "through-symlink",
        "char-dev",
        "block-dev",
        "hardlink-out",
        "hardlink-escape",
    ],
)
def test_hostile_entries_are_refused_and_leave_nothing(layers, tmp_path, entries):
    with pytest.raises(UnsafeLayer):
        unpack(layers, tmp_path, DIGEST_A, entries)
    assert not layers.has(DIGEST_A)
    assert list(layers.tmp.iterdir()) == []
    assert not Path("/tmp/escape").exists()


def test_absolute_names_stay_inside_the_layer(layers, tmp_path):
    root = unpack(layers, tmp_path, DIGEST_A, [entry("/etc/inside", data=b"x")])
    assert (root / "etc/inside").read_bytes() == b"x"


def test_whiteouts_become_overlay_whiteouts_but_spare_the_same_layer(layers, tmp_path):
    root = unpack(
        layers,
        tmp_path,
        DIGEST_B,
        [
            entry("etc/.wh.old.conf"),
            entry("etc/kept", data=b"new"),
            entry("etc/.wh.kept"),  # hides lower layers only, not this layer's own file
        ],
    )
    whiteout = os.lstat(root / "etc/old.conf")
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == os.makedev(0, 0)
    assert (root / "etc/kept").read_bytes() == b"new"
    assert not any(p.name.startswith(".wh.") for p in root.rglob("*"))


def test_opaque_whiteout_marks_its_directory_whatever_the_order(layers, tmp_path):
    root = unpack(
        layers,
        tmp_path,
        DIGEST_B,
        [
            entry("a/", tarfile.DIRTYPE, mode=0o755),
            entry("a/b/c/foo", data=b"f"),
            entry("a/.wh..wh..opq"),
        ],
    )
    assert os.getxattr(root / "a", OPAQUE_XATTR) == b"y"
    assert (root / "a/b/c/foo").read_bytes() == b"f"


def test_zstd_and_garbage_are_refused(layers, tmp_path):
    zstd = tmp_path / "z"
    zstd.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 64)
    with pytest.raises(UnsupportedLayer):
        layers.unpack(DIGEST_A, zstd)
    garbage = tmp_path / "g"
    garbage.write_bytes(b"\x1f\x8b" + b"not gzip at all" * 10)
    with pytest.raises(UnsafeLayer):
        layers.unpack(DIGEST_A, garbage)
    assert not layers.has(DIGEST_A)


def merged_view(lower_top_first: list[Path], tmp_path: Path) -> dict[str, str]:
    """What the kernel's overlayfs shows for these layers (mounted in a throw-away namespace)."""
    for sub in ("upper", "work", "merged"):
        (tmp_path / sub).mkdir()
    script = (
        f"mount -t overlay overlay -o lowerdir={':'.join(map(str, lower_top_first))},"
        f"upperdir={tmp_path}/upper,workdir={tmp_path}/work {tmp_path}/merged && "
        f"cd {tmp_path}/merged && "
        + """find . -type f -exec sh -c 'printf "%s=%s\\n" "$1" "$(cat "$1")"' _ {} \\;"""
    )
    out = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def test_the_kernel_applies_the_layers_as_the_spec_says(layers, tmp_path):
    base = unpack(
        layers,
        tmp_path,
        DIGEST_A,
        [
            entry("etc/my-app-config", data=b"old"),
            entry("bin/my-app-tools", data=b"v1"),
            entry("bin/tools/one", data=b"1"),
            entry("a/b/c/bar", data=b"bar"),
            entry("keep", data=b"k"),
        ],
    )
    top = unpack(
        layers,
        tmp_path,
        DIGEST_B,
        [
            entry("etc/my-app.d/default.cfg", data=b"cfg"),
            entry("etc/.wh.my-app-config"),
            entry("bin/my-app-tools", data=b"v2"),
            entry("a/b/c/foo", data=b"foo"),
            entry("a/.wh..wh..opq"),
            entry("bin/.wh.tools"),
            entry("bin/tools/", tarfile.DIRTYPE, mode=0o755),  # recreated: the old one is gone
            entry("bin/tools/two", data=b"2"),
        ],
    )
    assert merged_view([top, base], tmp_path) == {
        "./etc/my-app.d/default.cfg": "cfg",
        "./bin/my-app-tools": "v2",
        "./bin/tools/two": "2",
        "./a/b/c/foo": "foo",
        "./keep": "k",
    }


# a layer unpacked from its download, in the same pass --------------------------------------


def feed_in(layers: LayerStore, digest: str, data: bytes, piece: int = 7919):
    """Write ``data`` to a feed in uneven pieces, as a download does."""
    feed = layers.feed(digest)
    for start in range(0, len(data), piece):
        feed.write(data[start : start + piece])
    return feed


def tree(root: Path) -> dict[str, tuple[int, bytes | str | None]]:
    found = {}
    for path in sorted(root.rglob("*")):
        mode = path.lstat().st_mode
        content = path.read_bytes() if stat.S_ISREG(mode) else None
        content = os.readlink(path) if stat.S_ISLNK(mode) else content
        found[str(path.relative_to(root))] = (mode, content)
    return found


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "tar"])
def test_a_fed_layer_is_the_layer_unpacked_from_its_blob(layers, tmp_path, compress):
    entries = [
        entry("./etc/", tarfile.DIRTYPE, mode=0o755),
        entry("./etc/big", data=os.urandom(3 << 20)),  # several reads of the archive
        entry("./bin/tool", data=b"#!/bin/sh\n", mode=0o755),
        entry("./bin/alias", tarfile.SYMTYPE, link="tool"),
        entry("./bin/hard", tarfile.LNKTYPE, link="./bin/tool"),
        entry("./gone/.wh.old", data=b""),
    ]
    data = layer_bytes(entries, compress=compress)
    done = feed_in(layers, DIGEST_A, data).close(verified=True)
    assert done is not None and not done.reused
    blob = tmp_path / "blob"
    blob.write_bytes(data)
    from_blob = LayerStore(tmp_path / "other").unpack(DIGEST_A, blob).path
    assert tree(layers.path(DIGEST_A)) == tree(from_blob)
    assert list(layers.tmp.iterdir()) == []


def test_a_fed_layer_whose_blob_fails_its_digest_leaves_nothing(layers):
    feed = feed_in(layers, DIGEST_A, layer_bytes([entry("f", data=b"x" * 100_000)]))
    assert feed.close(verified=False) is None
    assert not layers.has(DIGEST_A)
    assert list(layers.tmp.iterdir()) == []


def test_a_download_cut_short_leaves_no_layer(layers):
    data = layer_bytes([entry("f", data=os.urandom(1 << 20))])
    feed = feed_in(layers, DIGEST_A, data[: len(data) // 2])
    assert feed.close(verified=False) is None
    assert not layers.has(DIGEST_A)
    assert list(layers.tmp.iterdir()) == []


@pytest.mark.timeout(60)
def test_a_hostile_fed_layer_is_refused_and_the_download_is_not_held_up(layers):
    # The bad entry comes first; megabytes follow, which the feed must keep taking (a
    # download writing to it never blocks) before it says why the layer was refused.
    data = layer_bytes([entry("../escape", data=b"x"), entry("pad", data=os.urandom(8 << 20))])
    feed = feed_in(layers, DIGEST_A, data, piece=1 << 20)
    with pytest.raises(UnsafeLayer, match="escapes the layer"):
        feed.close(verified=True)
    assert not layers.has(DIGEST_A)
    assert list(layers.tmp.iterdir()) == []
