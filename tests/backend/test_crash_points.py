"""A process killed (SIGKILL) at every commit point of every write operation leaves the store
consistent: after recovery no cache is left building, every usable cache has its snapshot and
blobs, gc leaves no file that no record names, and running the operation again ends with the
result it would have had without the kill (one cache per client token)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.engine.models import CacheStatus, ContainerGroupSpec, ImageCacheSpec

from ..conftest import Registry
from ..support import crash
from ..support.consistency import assert_consistent

TOKEN = "stack/dev/web/1"


def cache_spec(registry: Registry, image: str, **extra: object) -> dict:
    return {"name": "web", "images": [registry.ref(image)], **extra}


class Scenario:
    """Set up a store, name the operation to kill, and what running it again must give."""

    def __init__(
        self,
        action: str,
        args: Callable[[Registry, LocalBackend], dict],
        check: Callable[[Registry, LocalBackend, dict], None],
    ) -> None:
        self.action, self.args, self.check = action, args, check


def _create_again(registry: Registry, backend: LocalBackend, args: dict) -> None:
    again = backend.create_image_cache(ImageCacheSpec(**args["spec"]), client_token=TOKEN)
    assert again.status == CacheStatus.READY
    assert [c.id for c in backend.list_image_caches()] == [again.id]


def _update_again(registry: Registry, backend: LocalBackend, args: dict) -> None:
    again = backend.update_image_cache(args["id"], ImageCacheSpec(**args["spec"]))
    assert (again.status, [str(i) for i in again.images]) == (
        CacheStatus.READY,
        args["spec"]["images"],
    )
    assert [c.id for c in backend.list_image_caches()] == [args["id"]]


def _made(registry: Registry, backend: LocalBackend, spec: dict) -> str:
    return backend.create_image_cache(ImageCacheSpec(**spec)).id


def _group_again(backend: LocalBackend, args: dict) -> None:
    made = backend.create_container_group(ContainerGroupSpec(**args["spec"]))
    # The sample images run (busybox): the group is made and its container starts.
    assert backend.get_container_group(made.id).status.value in ("Pending", "Running")


def _delete_again(backend: LocalBackend, args: dict) -> None:
    backend.delete_image_cache(args["id"])
    assert backend.list_image_caches() == []


SCENARIOS = {
    "create": Scenario(
        "create",
        lambda r, b: {"spec": cache_spec(r, "demo/web:1.0"), "token": TOKEN},
        _create_again,
    ),
    "create-instant": Scenario(
        "create",
        lambda r, b: {"spec": cache_spec(r, "demo/web:1.0", instant=True), "token": TOKEN},
        _create_again,
    ),
    "rebuild": Scenario(
        "update",
        lambda r, b: {
            "id": _made(r, b, cache_spec(r, "demo/web:1.0")),
            "spec": cache_spec(r, "demo/web:1.1"),
        },
        _update_again,
    ),
    "group-auto-create": Scenario(
        "group",
        lambda r, b: {
            "spec": {
                "name": "g1",
                "containers": [{"name": "c", "image": r.ref("demo/tools:1.0")}],
                "cache": "auto-create",
            }
        },
        lambda r, b, args: _group_again(b, args),
    ),
    "delete": Scenario(
        "delete",
        lambda r, b: {"id": _made(r, b, cache_spec(r, "demo/web:1.0"))},
        lambda r, b, args: _delete_again(b, args),
    ),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_kill_at_every_commit_point_leaves_a_consistent_store(
    name: str, registry: Registry, tmp_path: Path
) -> None:
    scenario = SCENARIOS[name]
    probe = tmp_path / "probe"
    args = scenario.args(registry, LocalBackend(data_dir=probe))
    points = crash.run(probe, scenario.action, args).commits
    assert points, "the operation commits nothing"
    for point in range(1, points + 1):
        for when in ("before", "after"):
            data_dir = tmp_path / f"{point}-{when}"
            args = scenario.args(registry, LocalBackend(data_dir=data_dir))
            outcome = crash.run(data_dir, scenario.action, args, point, when)
            assert outcome.killed, f"no kill at commit {point}"
            backend = LocalBackend(data_dir=data_dir)
            try:
                assert_consistent(backend)
                scenario.check(registry, backend, args)
                assert_consistent(backend)
            except AssertionError as err:
                raise AssertionError(f"killed {when} commit {point} of {points}: {err}") from err
