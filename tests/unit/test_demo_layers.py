"""Demo layers of any size (``registry serve --layer-mib 300`` once failed: random.randbytes
takes at most 2**31 bits at once, so large payloads are made in pieces)."""

import gzip
import io
import tarfile

from eci_imagecache.testing import registry


def payload(blob: registry.Blob) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob.data))) as tar:
        [member] = tar.getmembers()
        data = tar.extractfile(member)
        assert data is not None
        return data.read()


def test_a_layer_larger_than_one_random_piece_is_whole_and_the_same_every_time(monkeypatch):
    monkeypatch.setattr(registry, "_RANDOM_PIECE", 1000)
    blob, _ = registry.make_layer("big", 2500)
    again, _ = registry.make_layer("big", 2500)
    assert len(payload(blob)) == 2500
    assert blob.digest == again.digest
    assert payload(blob)[:1000] != payload(blob)[1000:2000]  # pieces differ
