"""Container groups on the local backend: matching, preparation from the cache, auto creation."""

from typing import Any

import pytest

from eci_imagecache.backends.base import InvalidSpec
from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.engine.models import CacheKind, ContainerGroupSpec, ImageCacheSpec

from ..conftest import Registry


def group(registry: Registry, *names: str, **kwargs: object) -> ContainerGroupSpec:
    containers = [{"name": f"c{i}", "image": registry.ref(n)} for i, n in enumerate(names)]
    return ContainerGroupSpec(name=kwargs.pop("name", "group"), containers=containers, **kwargs)


def layers_applied(backend: LocalBackend) -> list[str]:
    """The digests of the layers the backend's (real) layer store applies from now on."""
    layers = backend.ctx.layers
    applied: list[str] = []
    stage = layers.stage

    def counted(digest: str, *args: Any, **kwargs: Any) -> Any:
        applied.append(digest)
        return stage(digest, *args, **kwargs)

    layers.stage = counted  # type: ignore[method-assign]
    return applied


def test_matching_cache_prepares_images_without_the_registry(backend, registry, clock) -> None:
    cache = backend.create_image_cache(
        ImageCacheSpec(
            name="web", images=[registry.ref("demo/web:1.0"), registry.ref("demo/worker:1.0")]
        )
    )
    clock.advance(minutes=5)
    applied = layers_applied(backend)
    made = backend.create_container_group(group(registry, "demo/web:1.0", cache="auto"))
    assert (made.cache_id, made.match_degree) == (cache.id, "exact")
    assert made.match_reason.startswith("1/1 images exact")
    web = registry.samples.images["demo/web:1.0"]
    assert (made.bytes_fetched, made.bytes_from_cache) == (0, web.content_bytes)
    assert backend.get_image_cache(cache.id).last_used_at == clock.now
    # The image's layers are on disk, unpacked once for the cache and shared with the group.
    assert all(backend.ctx.layers.has(layer.digest) for layer in web.layers)
    assert applied == []


def test_same_repository_other_version_reuses_shared_layers(backend, registry) -> None:
    backend.create_image_cache(ImageCacheSpec(name="web10", images=[registry.ref("demo/web:1.0")]))
    applied = layers_applied(backend)
    made = backend.create_container_group(group(registry, "demo/web:1.1", cache="auto"))
    assert made.match_degree == "repository"
    web11 = registry.samples.images["demo/web:1.1"]
    only_new = web11.config.size + web11.layers[-1].size
    assert made.bytes_fetched == only_new
    assert made.bytes_from_cache == web11.content_bytes - only_new
    # Only the new layer is unpacked; the shared ones are the cache's.
    assert applied == [web11.layers[-1].digest]


def test_miss_creates_an_automatic_cache_that_the_next_group_uses(backend, registry) -> None:
    first = backend.create_container_group(
        group(registry, "demo/tools:1.0", extra_ephemeral_storage_gib=10)
    )
    assert first.cache_id is None and first.auto_created_cache_id
    auto = backend.get_image_cache(first.auto_created_cache_id)
    assert (auto.name, auto.kind, auto.size_gib, auto.eviction.value) == (
        f"auto-create-for-{first.id}",
        CacheKind.AUTO,
        40,
        "LRU",
    )
    assert first.bytes_fetched == registry.samples.images["demo/tools:1.0"].content_bytes
    second = backend.create_container_group(
        group(registry, "demo/tools:1.0", extra_ephemeral_storage_gib=10)
    )
    assert (second.cache_id, second.bytes_fetched) == (auto.id, 0)


def test_auto_match_without_creation_leaves_no_cache(backend, registry) -> None:
    made = backend.create_container_group(group(registry, "demo/tools:1.0", cache="auto"))
    assert made.cache_id is None and made.auto_created_cache_id is None
    assert backend.list_image_caches() == []


def test_cache_too_big_for_the_storage_is_not_matched(backend, registry) -> None:
    backend.create_image_cache(
        ImageCacheSpec(name="big", size_gib=40, images=[registry.ref("demo/web:1.0")])
    )
    result = backend.match(group(registry, "demo/web:1.0"))
    assert result.chosen is None
    assert result.rejected[0].reason == "40 GiB does not fit 30 GiB of ephemeral storage"
    assert (
        backend.match(group(registry, "demo/web:1.0", extra_ephemeral_storage_gib=10)).chosen
        is not None
    )


def test_explicit_cache_must_exist_and_be_usable(backend, registry) -> None:
    with pytest.raises(InvalidSpec, match="cache_id: image cache imc-missing does not exist"):
        backend.create_container_group(
            group(registry, "demo/web:1.0", cache="explicit", cache_id="imc-missing")
        )
    cache = backend.create_image_cache(
        ImageCacheSpec(name="web", images=[registry.ref("demo/web:1.0")])
    )
    made = backend.create_container_group(
        group(registry, "demo/web:1.0", cache="explicit", cache_id=cache.id)
    )
    assert (made.cache_id, made.match_degree) == (cache.id, "exact")


def test_always_pull_policy_ignores_the_cache(backend, registry) -> None:
    backend.create_image_cache(ImageCacheSpec(name="web", images=[registry.ref("demo/web:1.0")]))
    spec = ContainerGroupSpec(
        name="always",
        cache="auto",
        containers=[
            {"name": "web", "image": registry.ref("demo/web:1.0"), "image_pull_policy": "Always"}
        ],
    )
    applied = layers_applied(backend)
    made = backend.create_container_group(spec)
    assert made.bytes_from_cache == 0
    assert made.bytes_fetched == registry.samples.images["demo/web:1.0"].content_bytes
    # The blobs came again from the registry; the layers the cache's build unpacked are reused.
    assert applied == []


def test_automatic_caches_expire_when_unused(backend, registry, clock) -> None:
    made = backend.create_container_group(group(registry, "demo/tools:1.0"))
    clock.advance(days=7)
    assert backend.list_image_caches() == []
    assert backend.get_container_group(made.id).auto_created_cache_id  # history is kept


def test_delete_group_removes_its_files(backend, registry) -> None:
    spec = ContainerGroupSpec(
        name="job",
        cache="none",
        restart_policy="Never",
        containers=[{"name": "job", "image": registry.runnable.job_ok.reference(registry.host)}],
    )
    made = backend.create_container_group(spec)
    workdir = backend.ctx.runtime.groups_dir / made.id
    assert workdir.exists()
    backend.delete_container_group(made.id)
    assert not workdir.exists()
    assert backend.list_container_groups() == []


def test_recovery_looks_at_every_group_only_when_one_is_new_to_this_process(
    backend, make_backend, registry, monkeypatch
) -> None:
    """Each operation first stops containers no record claims. Going through every group each
    time would make a deployment of N groups cost O(N²): the groups this process made, or has
    already found claimed, are left to their own reads; one made elsewhere is looked at."""
    cache = backend.create_image_cache(
        ImageCacheSpec(name="web", images=[registry.ref("demo/web:1.0")])
    )
    spec = group(registry, "demo/web:1.0", cache="explicit", cache_id=cache.id)
    made = [backend.create_container_group(spec) for _ in range(3)]
    assert len(backend.ctx.runtime.group_ids()) == len(made)  # the runtime holds each of them
    looked: list[int] = []
    reconcile = backend.ctx.runtime.reconcile
    monkeypatch.setattr(
        backend.ctx.runtime,
        "reconcile",
        lambda known: looked.append(len(backend.ctx.runtime.group_ids())) or reconcile(known),
    )
    backend.get_image_cache(cache.id)
    backend.create_container_group(spec)
    backend.recover()
    assert looked == []
    make_backend().create_container_group(spec)  # another backend, as another process would
    backend.recover()
    backend.recover()
    assert looked == [5]  # once, all groups kept
    assert {g.id for g in backend.list_container_groups()} == set(backend.ctx.runtime.group_ids())
