import gzip
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from eci_imagecache.runtime import host
from eci_imagecache.runtime.layers import LayerStore
from eci_imagecache.runtime.supervisor import Runtime
from eci_imagecache.testing.runnable import BusyboxMissing, busybox_base_layer

from ..conftest import missing


def layer_bytes(
    entries: list[tuple[tarfile.TarInfo, bytes | None]], compress: bool = True
) -> bytes:
    """A layer archive of our own making (names and types exactly as given)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return gzip.compress(raw.getvalue()) if compress else raw.getvalue()


def entry(
    name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = "", mode: int = 0o644
):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = link
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    return info, None


@pytest.fixture
def layers(tmp_path: Path) -> LayerStore:
    if os.geteuid() != 0:
        missing(
            "the layer store needs root (whiteouts are device nodes, opaque dirs trusted xattrs)"
        )
    return LayerStore(tmp_path / "layers")


@pytest.fixture
def busybox_layer(tmp_path: Path, layers: LayerStore) -> str:
    """The demo images' base layer (Debian's static busybox), unpacked; returns its digest."""
    try:
        blob, _ = busybox_base_layer()
    except BusyboxMissing as err:
        missing(str(err))
    path = tmp_path / "busybox.tar.gz"
    path.write_bytes(blob.data)
    layers.unpack(blob.digest, path)
    return blob.digest


@pytest.fixture
def runtime(tmp_path: Path, layers: LayerStore) -> Iterator[Runtime]:
    reason = host.unavailable()
    if reason:
        missing(f"containers cannot run here: {reason}")
    rt = Runtime(tmp_path / "groups", tmp_path / "state.db", layers, grace_seconds=2)
    yield rt
    for group_id in rt.group_ids():
        rt.stop(group_id)
