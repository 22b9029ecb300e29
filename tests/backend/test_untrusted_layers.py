"""Images from a registry are untrusted: a cache built from one whose layers unpack past the
cache's size, hold too many entries, or are not what the image config names (diff_ids) fails with
a clear reason and is never usable; a group pulling such an image itself is refused the same way
(its bound is its ephemeral storage). Images are pushed to a real registry; diff_ids are computed
with hashlib over the archives the test built."""

from __future__ import annotations

import gzip
import io
import json
import stat
import tarfile

import pytest

from eci_imagecache.backends.base import BackendError, BackendRegistryContentError
from eci_imagecache.backends.local.build import expected_diff_ids
from eci_imagecache.engine.models import (
    GIB,
    CacheStatus,
    ContainerGroupSpec,
    ImageCacheSpec,
    SnapshotKind,
)
from eci_imagecache.engine.planner import Layer, ResolvedImage
from eci_imagecache.registry.client import sha256_digest
from eci_imagecache.testing.registry import OCI_LAYER, Blob, make_layer

from ..conftest import Registry


def layer(tar_bytes: bytes) -> tuple[Blob, str]:
    """(gzip blob, diff id) of an archive."""
    gz = gzip.compress(tar_bytes, mtime=0)
    return Blob(sha256_digest(gz), gz, OCI_LAYER), sha256_digest(tar_bytes)


def claiming(size: int) -> bytes:
    """An archive whose one file says it is ``size`` bytes (4 KiB of it follow): what a gzip
    bomb's first header says, without the bytes a test machine would have to inflate."""
    info = tarfile.TarInfo("var/lib/huge")
    info.size = size
    return info.tobuf(format=tarfile.GNU_FORMAT) + bytes(4096)


def files(count: int) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for n in range(count):
            tar.addfile(tarfile.TarInfo(f"many/{n}"))
    return raw.getvalue()


def push(registry: Registry, name: str, layers: list[tuple[Blob, str]]) -> str:
    builder = registry.builder()
    try:
        builder.push_image(f"untrusted/{name}", "1", layers)
    finally:
        builder.close()
    return registry.ref(f"untrusted/{name}:1")


def failed_and_unusable(backend, cache_id: str, *layer_digests: str) -> str:
    """The cache is Failed with nothing of it usable; returns its failure."""
    cache = backend.get_image_cache(cache_id)
    assert cache.status == CacheStatus.FAILED and not cache.usable
    assert cache.snapshot == SnapshotKind.NONE and cache.snapshot_id is None
    with backend.store.read() as db:
        assert backend.store.cache_layers(db, cache_id) == {}
    for digest in layer_digests:
        assert not backend.ctx.layers.has(digest)
    assert list(backend.ctx.layers.tmp.iterdir()) == []
    probe = ContainerGroupSpec(name="probe", cache="auto", containers=[{"name": "c", "image": "x"}])
    assert backend.match(probe).chosen is None
    assert cache.failure
    return cache.failure


def only_cache(backend) -> str:
    [cache] = backend.list_image_caches()
    return cache.id


def test_a_cache_whose_layers_unpack_past_its_size_fails(backend, registry) -> None:
    # 25 GiB unpacked from a few KB of gzip; the cache's size is the minimum, 20 GiB.
    bomb = layer(claiming(25 * GIB))
    image = push(registry, "bomb", [make_layer("untrusted-base", 4096), bomb])
    with pytest.raises(BackendError) as refused:
        backend.create_image_cache(ImageCacheSpec(name="bomb", images=[image], size_gib=20))
    message = str(refused.value)
    assert "unpacked layers exceed image cache bomb's size of 20 GiB" in message
    assert "'var/lib/huge'" in message and f"{25 * GIB:,} bytes" in message
    failure = failed_and_unusable(backend, only_cache(backend), bomb[0].digest)
    assert "exceed image cache bomb's size of 20 GiB" in failure


def test_a_group_pulling_layers_past_its_ephemeral_storage_is_refused(backend, registry) -> None:
    bomb = layer(claiming(35 * GIB))
    image = push(registry, "group-bomb", [bomb])
    group = ContainerGroupSpec(
        name="puller", cache="none", containers=[{"name": "c", "image": image}]
    )
    with pytest.raises(BackendError, match="container group puller's ephemeral storage of 30 GiB"):
        backend.create_container_group(group)
    assert backend.list_container_groups() == []
    assert not backend.ctx.layers.has(bomb[0].digest)
    # Declared extra storage raises the bound: 30 + 10 GiB holds it (its bytes then run out).
    bigger = group.model_copy(update={"extra_ephemeral_storage_gib": 10})
    with pytest.raises(BackendError) as other:
        backend.create_container_group(bigger)
    assert "ephemeral storage" not in str(other.value)


def test_a_cache_whose_layer_is_not_its_configs_diff_id_fails(backend, registry) -> None:
    good, wrong = make_layer("untrusted-good", 2048), make_layer("untrusted-other", 2048)
    image = push(registry, "mismatch", [(good[0], wrong[1])])  # the config names another layer
    with pytest.raises(BackendError, match="not the diff_id"):
        backend.create_image_cache(ImageCacheSpec(name="mismatch", images=[image]))
    failure = failed_and_unusable(backend, only_cache(backend), good[0].digest)
    assert f"layer {good[0].digest[:19]}" in failure and wrong[1][:19] in failure


def test_a_layer_held_by_another_cache_is_checked_against_the_new_images_config(
    backend, registry
) -> None:
    shared = make_layer("untrusted-shared", 2048)
    honest = push(registry, "honest", [shared])
    lying = push(registry, "lying", [(shared[0], make_layer("untrusted-else", 64)[1])])
    assert backend.create_image_cache(ImageCacheSpec(name="honest", images=[honest])).usable
    with pytest.raises(BackendError, match="not the diff_id"):
        backend.create_image_cache(ImageCacheSpec(name="lying", images=[lying], layer_reuse=True))
    [failed] = [c for c in backend.list_image_caches() if c.name == "lying"]
    assert failed.status == CacheStatus.FAILED and not failed.usable


def test_a_config_without_diff_ids_fails_the_cache(backend, registry) -> None:
    builder = registry.builder()
    try:
        base = make_layer("untrusted-nodiff", 1024)
        pushed = builder.push_image("untrusted/no-diff-ids", "1", [base])
        config = b'{"architecture": "amd64", "os": "linux"}'
        blob = Blob(sha256_digest(config), config, pushed.config.media_type)
        builder.push_blob("untrusted/no-diff-ids", blob)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": blob.descriptor(),
            "layers": [base[0].descriptor()],
        }
        builder.push_manifest(
            "untrusted/no-diff-ids", "1", manifest, "application/vnd.oci.image.manifest.v1+json"
        )
    finally:
        builder.close()
    image = registry.ref("untrusted/no-diff-ids:1")
    with pytest.raises(BackendError, match=r"names no rootfs\.diff_ids"):
        backend.create_image_cache(ImageCacheSpec(name="nodiff", images=[image]))
    failed_and_unusable(backend, only_cache(backend), base[0].digest)


def test_an_oversized_config_fails_the_cache(backend, registry) -> None:
    base = make_layer("untrusted-big-config", 1024)
    builder = registry.builder()
    try:
        padding = "x" * (17 << 20)  # real configs are a few KiB
        builder.push_image("untrusted/big-config", "1", [base], config={"Labels": {"p": padding}})
    finally:
        builder.close()
    image = registry.ref("untrusted/big-config:1")
    with pytest.raises(BackendError, match=r"bytes \(at most 16,777,216\)"):
        backend.create_image_cache(ImageCacheSpec(name="big-config", images=[image]))
    failed_and_unusable(backend, only_cache(backend), base[0].digest)


def test_the_entries_of_a_layer_are_capped_by_the_environment(
    make_backend, registry, monkeypatch
) -> None:
    many = layer(files(200))
    image = push(registry, "many", [many])
    monkeypatch.setenv("ECI_IMAGECACHE_MAX_LAYER_ENTRIES", "100")
    backend = make_backend()
    with pytest.raises(BackendError, match="more than 100 entries"):
        backend.create_image_cache(ImageCacheSpec(name="many", images=[image]))
    failed_and_unusable(backend, only_cache(backend), many[0].digest)
    monkeypatch.setenv("ECI_IMAGECACHE_MAX_LAYER_ENTRIES", "1000")
    again = make_backend().update_image_cache(
        only_cache(backend), ImageCacheSpec(name="many", images=[image])
    )
    assert again.status == CacheStatus.READY


def test_the_data_dirs_stores_are_roots_alone(make_backend, tmp_path) -> None:
    data = tmp_path / "data"
    for sub in ("layers", "blobs"):
        (data / sub).mkdir(parents=True)
        (data / sub).chmod(0o755)  # as an older version left them
    backend = make_backend(data_dir=data)
    for directory in (backend.ctx.layers.root, backend.blobs.root):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def resolved(name: str, config: bytes, layers: list[str]) -> ResolvedImage:
    return ResolvedImage(
        reference=f"registry.test/{name}:1",
        manifest_digest=sha256_digest(name.encode()),
        config=Layer(digest=sha256_digest(config), size=len(config)),
        layers=[Layer(digest=digest, size=1) for digest in layers],
    )


def config_naming(*diff_ids: object) -> bytes:
    return json.dumps({"rootfs": {"type": "layers", "diff_ids": list(diff_ids)}}).encode()


L1, L2 = sha256_digest(b"layer one"), sha256_digest(b"layer two")
D1, D2 = sha256_digest(b"diff one"), sha256_digest(b"diff two")


@pytest.mark.parametrize(
    ("images", "message"),
    [
        ([("a", config_naming(D1), [L1, L2])], "names 1 diff_ids for the manifest's 2 layers"),
        ([("a", config_naming(D1, "md5:abc"), [L1, L2])], "diff_id 'md5:abc' is not sha256"),
        ([("a", b'{"rootfs": {}}', [L1])], r"names no rootfs\.diff_ids"),
        (
            [("a", config_naming(D1), [L1]), ("b", config_naming(D2), [L1])],
            r"registry\.test/b:1: .* names diff_id sha256:.* for layer sha256:.*, which image "
            r"registry\.test/a:1 names",
        ),
    ],
    ids=["count", "algorithm", "missing", "two-images-disagree"],
)
def test_configs_that_cannot_name_their_layers_diff_ids_are_refused(images, message) -> None:
    configs = {sha256_digest(config): config for _, config, _ in images}
    with pytest.raises(BackendRegistryContentError, match=message):
        expected_diff_ids([resolved(*image) for image in images], configs.__getitem__)


def test_each_layer_is_expected_as_the_diff_id_its_config_names() -> None:
    a = resolved("a", config_naming(D1, D2), [L1, L2])
    b = resolved("b", config_naming(D1), [L1])  # the same layer, the same diff_id
    configs = {a.config.digest: config_naming(D1, D2), b.config.digest: config_naming(D1)}
    assert expected_diff_ids([a, b], configs.__getitem__) == {L1: D1, L2: D2}
