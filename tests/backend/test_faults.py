"""Faults and bad input: clear errors, nothing half-made marked usable, nothing secret leaked."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from pydantic import ValidationError

from eci_imagecache.backends.base import BackendError
from eci_imagecache.backends.local.blobs import BlobStore, UnsafeDigest
from eci_imagecache.engine.models import (
    CacheStatus,
    ContainerGroupSpec,
    ImageCacheSpec,
    SnapshotKind,
)
from eci_imagecache.registry.client import Limits

from ..conftest import REGISTRY_USER, Registry
from ..support.fault_proxy import Fault, FaultProxy
from .conftest import FastRegistry


@pytest.fixture
def proxy(registry: Registry) -> Iterator[FaultProxy]:
    proxy = FaultProxy(registry.server.url)
    yield proxy
    proxy.close()


def via(proxy: FaultProxy, name: str) -> str:
    return f"{proxy.host}/{name}"


def web_layer(registry: Registry) -> str:
    return registry.samples.images["demo/web:1.0"].layers[-1].digest


def assert_nothing_usable(backend, digest: str) -> None:
    for cache in backend.list_image_caches():
        assert cache.status == CacheStatus.FAILED and not cache.usable
        assert cache.snapshot == SnapshotKind.NONE
    assert not backend.ctx.holds(digest)
    assert list(backend.blobs.tmp.iterdir()) == []
    assert list(backend.ctx.layers.tmp.iterdir()) == []
    probe = ContainerGroupSpec(
        name="probe", cache="auto", containers=[{"name": "c", "image": "nginx"}]
    )
    assert backend.match(probe).chosen is None


def test_unknown_tag_fails_clearly_and_creates_nothing(backend, registry) -> None:
    with pytest.raises(BackendError, match=r"demo/web:9\.9: not found on 127\.0\.0\.1"):
        backend.create_image_cache(
            ImageCacheSpec(name="nope", images=[registry.ref("demo/web:9.9")])
        )
    assert backend.list_image_caches() == []


def test_private_registry_needs_credentials(backend, private_registry: Registry) -> None:
    image = private_registry.ref("demo/web:1.0")
    with pytest.raises(BackendError, match="needs credentials"):
        backend.create_image_cache(ImageCacheSpec(name="priv", images=[image]))
    wrong = {"server": private_registry.host, "username": REGISTRY_USER[0], "password": "wrong-pw"}
    with pytest.raises(BackendError, match="refused the credentials") as info:
        backend.create_image_cache(ImageCacheSpec(name="priv", images=[image], credentials=[wrong]))
    assert "wrong-pw" not in str(info.value)
    assert backend.list_image_caches() == []


def test_password_never_reaches_the_store(backend, private_registry: Registry) -> None:
    user, password = REGISTRY_USER
    cred = {"server": private_registry.host, "username": user, "password": password}
    record = backend.create_image_cache(
        ImageCacheSpec(
            name="priv", images=[private_registry.ref("demo/web:1.0")], credentials=[cred]
        )
    )
    assert record.status == CacheStatus.READY
    assert record.credential_servers == [private_registry.host]
    backend.store._connect().execute("PRAGMA wal_checkpoint(FULL)")
    for path in backend.data_dir.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path
    assert password not in repr(record) and password not in record.model_dump_json()


def test_transient_5xx_is_retried(backend, registry, proxy) -> None:
    proxy.faults.append(Fault(pattern=r"GET /v2/demo/web/blobs/", status=503, times=2))
    record = backend.create_image_cache(
        ImageCacheSpec(name="ok", images=[via(proxy, "demo/web:1.0")])
    )
    assert record.status == CacheStatus.READY


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (Fault(pattern="GET /v2/demo/web/blobs/", status=500), "failed"),
        (Fault(pattern="GET /v2/demo/web/blobs/", delay=1.0), "Timeout"),
        (Fault(pattern="GET /v2/demo/web/blobs/", corrupt=True), "does not match its digest"),
    ],
    ids=["5xx", "timeout", "digest-mismatch"],
)
def test_blob_fault_leaves_a_failed_cache_and_no_partial_blob(
    make_backend, registry, proxy, fault, message
) -> None:
    # A short client timeout makes the injected delay a timeout.
    backend = make_backend(
        registry_factory=partial(FastRegistry, limits=Limits(connect_timeout=0.4, read_timeout=0.4))
    )
    digest = web_layer(registry)
    fault.pattern += digest
    proxy.faults.append(fault)
    with pytest.raises(BackendError, match=message) as info:
        backend.create_image_cache(ImageCacheSpec(name="bad", images=[via(proxy, "demo/web:1.0")]))
    [failed] = backend.list_image_caches()
    assert failed.id in str(info.value)
    assert failed.failure and message.split()[0] in failed.failure
    assert backend.events(failed.id)[-1].reason == "BuildFailed"
    assert_nothing_usable(backend, digest)
    # The fault goes away: the next `pulumi up` creates again, and the failed attempt gives way.
    proxy.faults.clear()
    again = backend.create_image_cache(
        ImageCacheSpec(name="bad", images=[via(proxy, "demo/web:1.0")])
    )
    assert again.status == CacheStatus.READY and again.failure is None
    assert [c.id for c in backend.list_image_caches()] == [again.id]
    assert f"replaces failed {failed.id}" in backend.events(again.id)[0].message
    assert backend.ctx.layers.has(digest)


def test_gc_removes_failed_caches(backend, registry, proxy) -> None:
    proxy.faults.append(Fault(pattern="GET /v2/demo/web/blobs/", status=500))
    with pytest.raises(BackendError):
        backend.create_image_cache(ImageCacheSpec(name="bad", images=[via(proxy, "demo/web:1.0")]))
    [failed] = backend.list_image_caches()
    dry = backend.gc(dry_run=True)
    assert dry.failed == [f"{failed.id} ({failed.failure})"]
    assert backend.list_image_caches() == [failed]
    backend.gc()
    assert backend.list_image_caches() == []


SLOW_BUILD = """
import sys
from pathlib import Path
from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.engine.models import ImageCacheSpec
LocalBackend(data_dir=Path(sys.argv[1])).create_image_cache(
    ImageCacheSpec(name="slow", images=[sys.argv[2]]))
"""


def test_process_killed_mid_build_is_marked_failed_on_next_run(
    make_backend, registry, proxy, tmp_path: Path
) -> None:
    proxy.faults.append(Fault(pattern="GET /v2/demo/tools/blobs/", slow_body=0.2))
    data_dir = tmp_path / "killed"
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_BUILD, str(data_dir), via(proxy, "demo/tools:1.0")]
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if (data_dir / "state.db").exists():
                with sqlite3.connect(data_dir / "state.db", timeout=10) as db:
                    if (
                        db.execute(
                            "SELECT count(*) FROM sqlite_master WHERE name='builds'"
                        ).fetchone()[0]
                        and db.execute("SELECT count(*) FROM builds").fetchone()[0]
                    ):
                        break
            time.sleep(0.05)
        else:
            pytest.fail("the child never started its build")
        # Mid-download: blobs are arriving, and their layers unpacking in the same pass.
        while not any((data_dir / "layers" / "tmp").glob("*")):
            assert time.monotonic() < deadline, "no layer started unpacking"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(10)
    assert list((data_dir / "layers" / "tmp").iterdir())  # what the killed build left
    backend = make_backend(data_dir=data_dir)
    [cache] = backend.list_image_caches()
    assert cache.status == CacheStatus.FAILED
    assert f"process {child.pid} ended" in cache.failure
    assert list(backend.blobs.tmp.iterdir()) == []
    assert list(backend.ctx.layers.tmp.iterdir()) == []
    proxy.faults.clear()
    fixed = backend.update_image_cache(
        cache.id, ImageCacheSpec(name="slow", images=[via(proxy, "demo/tools:1.0")])
    )
    assert fixed.status == CacheStatus.READY


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:../../../etc/passwd",
        "sha256:" + "a" * 63 + "/",
        "md5:abc",
        "/etc/passwd",
        "sha256:" + "A" * 64,
    ],
)
def test_crafted_digests_cannot_escape_the_store(tmp_path: Path, digest: str) -> None:
    store = BlobStore(tmp_path / "blobs")
    with pytest.raises(UnsafeDigest):
        store.path(digest)


@pytest.mark.parametrize("name", ["../../etc", "a/b", "..", "x" * 200, "UPPER", "name with space"])
def test_crafted_names_are_rejected(name: str) -> None:
    with pytest.raises(ValidationError) as info:
        ImageCacheSpec(name=name, images=["nginx"])
    assert info.value.errors()[0]["loc"] == ("name",)


def test_failed_rebuild_keeps_serving_the_old_images(backend, registry, proxy) -> None:
    made = backend.create_image_cache(
        ImageCacheSpec(name="web", images=[via(proxy, "demo/web:1.0")])
    )
    new_layer = registry.samples.images["demo/web:1.1"].layers[-1].digest
    proxy.faults.append(Fault(pattern=f"GET /v2/demo/web/blobs/{new_layer}", status=500))
    with pytest.raises(BackendError, match="500"):
        backend.update_image_cache(
            made.id, ImageCacheSpec(name="web", images=[via(proxy, "demo/web:1.1")])
        )
    after = backend.get_image_cache(made.id)
    assert (after.status, after.images, after.snapshot_id) == (
        CacheStatus.READY,
        made.images,
        made.snapshot_id,
    )
    assert "500" in after.failure
    group = ContainerGroupSpec(
        name="old", cache="auto", containers=[{"name": "c", "image": via(proxy, "demo/web:1.0")}]
    )
    used = backend.create_container_group(group)
    assert (used.cache_id, used.match_degree, used.bytes_fetched) == (made.id, "exact", 0)
