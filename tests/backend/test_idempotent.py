"""Creates carry a client token: the same create run twice (a retry, a re-run `pulumi up` after
an interrupted one, two processes at once) ends with one cache."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eci_imagecache.backends.base import BackendError
from eci_imagecache.engine.models import CacheStatus, ImageCacheSpec

from ..conftest import Registry
from ..support.fault_proxy import Fault, FaultProxy


@pytest.fixture
def proxy(registry: Registry) -> Iterator[FaultProxy]:
    proxy = FaultProxy(registry.server.url)
    yield proxy
    proxy.close()


def spec(image: str, name: str = "web") -> ImageCacheSpec:
    return ImageCacheSpec(name=name, images=[image])


def test_a_second_create_with_the_token_returns_the_first_cache(backend, registry, proxy) -> None:
    image = f"{proxy.host}/demo/web:1.0"
    first = backend.create_image_cache(spec(image), client_token="t-1")
    requests = len(proxy.hits)
    again = backend.create_image_cache(spec(image), client_token="t-1")
    assert again == first
    assert len(proxy.hits) == requests  # nothing resolved, nothing fetched
    other = backend.create_image_cache(spec(image), client_token="t-2")
    assert other.id != first.id
    assert sorted(c.id for c in backend.list_image_caches()) == sorted([first.id, other.id])


def test_a_token_of_a_building_cache_returns_it(backend, registry, proxy) -> None:
    proxy.faults.append(Fault(pattern="GET /v2/demo/tools/blobs/", slow_body=0.05))
    image = f"{proxy.host}/demo/tools:1.0"
    building = backend.create_image_cache(spec(image), client_token="t", wait=False)
    assert building.status == CacheStatus.CREATING
    assert backend.create_image_cache(spec(image), client_token="t", wait=False).id == building.id
    # Waiting for the same create waits for that build, not a second one.
    ready = backend.create_image_cache(spec(image), client_token="t")
    assert (ready.id, ready.status) == (building.id, CacheStatus.READY)
    assert [c.id for c in backend.list_image_caches()] == [building.id]


def test_a_token_of_a_failed_cache_gives_way_to_the_new_attempt(backend, registry, proxy) -> None:
    proxy.faults.append(Fault(pattern="GET /v2/demo/web/blobs/", status=500))
    image = f"{proxy.host}/demo/web:1.0"
    with pytest.raises(BackendError):
        backend.create_image_cache(spec(image), client_token="t")
    [failed] = backend.list_image_caches()
    proxy.faults.clear()
    made = backend.create_image_cache(spec(image, name="renamed"), client_token="t")
    assert made.status == CacheStatus.READY and made.id != failed.id
    assert [c.id for c in backend.list_image_caches()] == [made.id]
    assert f"replaces failed {failed.id}" in backend.events(made.id)[0].message


def test_deleting_a_cache_frees_its_token(backend, registry) -> None:
    first = backend.create_image_cache(spec(registry.ref("demo/web:1.0")), client_token="t")
    backend.delete_image_cache(first.id)
    second = backend.create_image_cache(spec(registry.ref("demo/web:1.0")), client_token="t")
    assert second.id != first.id and second.status == CacheStatus.READY


CREATE = """
import sys
from pathlib import Path
from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.engine.models import ImageCacheSpec
backend = LocalBackend(data_dir=Path(sys.argv[1]))
record = backend.create_image_cache(
    ImageCacheSpec(name="web", images=[sys.argv[2]]), client_token=sys.argv[3])
print(record.id, record.status.value, flush=True)
"""


def create_in_child(data_dir: Path, image: str, token: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CREATE, str(data_dir), image, token],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_processes_with_one_token_make_one_cache(make_backend, registry, proxy, tmp_path):
    proxy.faults.append(Fault(pattern="GET /v2/demo/tools/blobs/", slow_body=0.02))
    data_dir = tmp_path / "shared"
    make_backend(data_dir=data_dir)
    image = f"{proxy.host}/demo/tools:1.0"
    children = [create_in_child(data_dir, image, "stack/dev/tools/1") for _ in range(3)]
    answers = {child.communicate(timeout=120)[0].strip() for child in children}
    [cache] = make_backend(data_dir=data_dir).list_image_caches()
    assert answers == {f"{cache.id} Ready"}


def test_rerun_after_a_kill_mid_build_ends_with_one_usable_cache(
    make_backend, registry, proxy, tmp_path
) -> None:
    proxy.faults.append(Fault(pattern="GET /v2/demo/tools/blobs/", slow_body=0.2))
    data_dir = tmp_path / "killed"
    image = f"{proxy.host}/demo/tools:1.0"
    child = create_in_child(data_dir, image, "t")
    try:
        deadline = time.monotonic() + 30
        while not any("/blobs/" in hit for hit in proxy.hits):
            assert time.monotonic() < deadline, "the child never started fetching"
            time.sleep(0.05)
        time.sleep(0.3)  # mid-download
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.communicate(timeout=10)
    backend = make_backend(data_dir=data_dir)
    [killed] = backend.list_image_caches()
    assert killed.status == CacheStatus.FAILED and f"process {child.pid}" in killed.failure
    proxy.faults.clear()
    rerun = create_in_child(data_dir, image, "t")
    cache_id, status = rerun.communicate(timeout=120)[0].split()
    assert status == "Ready" and cache_id != killed.id
    assert [(c.id, c.usable) for c in backend.list_image_caches()] == [(cache_id, True)]
