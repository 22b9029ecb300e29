"""The alicloud backend as the cloud behaves: retries, tokens, lagging reads, what UpdateImageCache
cannot do. Through the official SDK to the emulator."""

from pathlib import Path

import pytest

from eci_imagecache.backends.base import BackendError
from eci_imagecache.engine.diff import ChangeKind, diff_cache
from eci_imagecache.engine.models import CacheKind, ContainerGroupSpec, ImageCacheSpec
from eci_imagecache.retry import RetryPolicy
from eci_imagecache.testing.registry import make_layer

from ..conftest import Registry
from ..contract.conftest import cloud_backend
from .conftest import Wire, make_wire
from .lossy_proxy import LossyProxy


def spec(registry: Registry, *names: str, **fields) -> ImageCacheSpec:
    return ImageCacheSpec(
        name=fields.pop("name", "web"), images=[registry.ref(n) for n in names], **fields
    )


def test_an_update_returns_the_updated_cache_even_when_reads_lag(
    tmp_path: Path, registry: Registry
) -> None:
    """The cloud may answer describes with the cache as it was just after UpdateImageCache."""
    running = make_wire(tmp_path, stale_reads=3)
    wire = next(running)
    try:
        made = wire.backend.create_image_cache(spec(registry, "demo/web:1.0", retention_days=2))
        updated = wire.backend.update_image_cache(
            made.id, spec(registry, "demo/web:1.0", retention_days=7, eviction="LRU")
        )
        assert (updated.retention_days, updated.eviction.value) == (7, "LRU")
    finally:
        running.close()


def test_a_repeated_client_token_gets_the_first_cache(wire: Wire, registry: Registry) -> None:
    first = wire.backend.create_image_cache(spec(registry, "demo/web:1.0"), client_token="t-1")
    again = wire.backend.create_image_cache(spec(registry, "demo/web:1.0"), client_token="t-1")
    other = wire.backend.create_image_cache(
        spec(registry, "demo/web:1.0", name="other"), client_token="t-2"
    )
    assert again.id == first.id != other.id
    assert len(wire.local.list_image_caches()) == 2


def test_without_a_token_a_rerun_of_the_same_spec_adopts_the_first(
    wire: Wire, registry: Registry
) -> None:
    first = wire.backend.create_image_cache(spec(registry, "demo/web:1.0"))
    again = wire.backend.create_image_cache(spec(registry, "demo/web:1.0"))
    assert again.id == first.id and len(wire.local.list_image_caches()) == 1
    tokens = [q["ClientToken"] for a, q, _ in wire.client.calls if a == "CreateImageCache"]
    assert len(set(tokens)) == 1


def test_without_a_token_a_rotated_password_is_the_same_request(
    wire: Wire, registry: Registry
) -> None:
    """The derived ClientToken leaves the password out (it used to hash it in): a re-run with
    a rotated password adopts the first cache, and no token depends on a secret."""

    def with_password(password: str) -> ImageCacheSpec:
        credential = {"server": registry.host, "username": "u", "password": password}
        return spec(registry, "demo/web:1.0", credentials=[credential])

    first = wire.backend.create_image_cache(with_password("pw-one"))
    again = wire.backend.create_image_cache(with_password("pw-two"))
    assert again.id == first.id and len(wire.local.list_image_caches()) == 1
    tokens = [q["ClientToken"] for a, q, _ in wire.client.calls if a == "CreateImageCache"]
    assert len(set(tokens)) == 1


def test_a_lost_answer_is_retried_with_the_same_token(wire: Wire, registry: Registry) -> None:
    proxy = LossyProxy(wire.server.endpoint)
    proxy.lose = {"CreateImageCache": 1, "CreateContainerGroup": 1}
    backend = cloud_backend(proxy.endpoint, retry=RetryPolicy.immediate())
    try:
        made = backend.create_image_cache(spec(registry, "demo/web:1.0"))
        group = backend.create_container_group(
            ContainerGroupSpec(
                name="grp",
                containers=[{"name": "web", "image": registry.ref("demo/web:1.0")}],
                cache="explicit",
                cache_id=made.id,
            )
        )
    finally:
        proxy.close()
    assert proxy.lost == ["CreateImageCache", "CreateContainerGroup"]
    assert [c.id for c in wire.local.list_image_caches()] == [made.id]
    assert [g.id for g in wire.local.list_container_groups()] == [group.id]
    assert group.cache_id == made.id


def test_clearing_retention_replaces_the_cache_on_the_cloud_only() -> None:
    """UpdateImageCache has no value of RetentionDays for "never expire"."""
    old = {"name": "web", "images": ["nginx"], "retention_days": 5}
    new = {"name": "web", "images": ["nginx"], "retention_days": None}
    assert diff_cache({**old, "backend": "local"}, {**new, "backend": "local"}).kind == (
        ChangeKind.UPDATE
    )
    cloud = diff_cache({**old, "backend": "alicloud"}, {**new, "backend": "alicloud"})
    assert cloud.replaced_fields == ["retention_days"]


def test_registry_transport_changes_replace_the_cache_on_the_cloud() -> None:
    """UpdateImageCache has no InsecureRegistry or PlainHttpRegistry: nothing would change."""
    for field in ("insecure_registries", "plain_http_registries"):
        old = {"images": ["nginx"], field: [], "backend": "alicloud"}
        new = {"images": ["nginx"], field: ["registry.internal"], "backend": "alicloud"}
        assert diff_cache(old, new).replaced_fields == [field]
        assert diff_cache({**old, "backend": "local"}, {**new, "backend": "local"}).kind == (
            ChangeKind.UPDATE
        )


def test_the_backend_refuses_to_pretend_it_cleared_retention(
    wire: Wire, registry: Registry
) -> None:
    made = wire.backend.create_image_cache(spec(registry, "demo/web:1.0", retention_days=3))
    with pytest.raises(BackendError, match=r"retention_days: .* replaces the cache"):
        wire.backend.update_image_cache(made.id, spec(registry, "demo/web:1.0"))
    assert wire.backend.get_image_cache(made.id).retention_days == 3


def test_tags_are_read_back_and_cannot_silently_be_dropped(wire: Wire, registry: Registry) -> None:
    made = wire.backend.create_image_cache(
        spec(registry, "demo/web:1.0", tags={"team": "web"}, resource_group_id="rg-1")
    )
    assert made.tags == {"team": "web"} and made.resource_group_id == "rg-1"
    more = wire.backend.update_image_cache(
        made.id,
        spec(registry, "demo/web:1.0", tags={"team": "web", "env": "ci"}, resource_group_id="rg-1"),
    )
    assert more.tags == {"team": "web", "env": "ci"}
    with pytest.raises(BackendError, match=r"tags: .* cannot remove env"):
        wire.backend.update_image_cache(
            made.id, spec(registry, "demo/web:1.0", tags={"team": "web"}, resource_group_id="rg-1")
        )


def test_an_automatic_cache_may_hold_more_than_twenty_images(
    wire: Wire, registry: Registry
) -> None:
    builder = registry.builder()
    try:
        refs = []
        for i in range(21):
            builder.push_image("demo/many", f"v{i}", [make_layer(f"many-{i}", 512)])
            refs.append(registry.ref(f"demo/many:v{i}"))
    finally:
        builder.close()
    group = wire.backend.create_container_group(
        ContainerGroupSpec(
            name="many",
            containers=[{"name": f"c{i}", "image": ref} for i, ref in enumerate(refs)],
            cache="auto-create",
        )
    )
    auto = wire.backend.get_image_cache(group.auto_created_cache_id)
    assert auto.kind == CacheKind.AUTO and len(auto.images) == 21
    assert group.auto_created_cache_id in {c.id for c in wire.backend.list_image_caches()}


def test_a_refresh_shows_tags_changed_on_the_cloud(wire: Wire, registry: Registry) -> None:
    from eci_imagecache.dynamic.image_cache_provider import outputs_of

    declared = {"name": "web", "images": [registry.ref("demo/web:1.0")], "tags": {"team": "web"}}
    made = wire.backend.create_image_cache(spec(registry, "demo/web:1.0", tags={"team": "web"}))
    # Someone adds a tag in the console (UpdateImageCache's Tag adds tags).
    wire.backend.update_image_cache(
        made.id, spec(registry, "demo/web:1.0", tags={"team": "web", "owner": "ops"})
    )
    outs = outputs_of(wire.backend.get_image_cache(made.id), declared)
    assert outs["tags"] == {"team": "web", "owner": "ops"}


def test_a_rebuild_carries_the_build_settings(wire: Wire, registry: Registry) -> None:
    """Images changed: the build's settings travel with them (they are not reported back)."""
    first = spec(registry, "demo/web:1.0", vswitch_id="vsw-1", layer_reuse=True)
    made = wire.backend.create_image_cache(first)
    rebuilt = wire.backend.update_image_cache(
        made.id, spec(registry, "demo/web:1.1", vswitch_id="vsw-1", layer_reuse=True)
    )
    assert [str(i) for i in rebuilt.images] == [registry.ref("demo/web:1.1")]
    (query,) = [q for a, q, _ in wire.client.calls if a == "UpdateImageCache"]
    assert query["Image.1"] == registry.ref("demo/web:1.1") and query["VSwitchId"] == "vsw-1"
    assert query["AutoMatchImageCache"].lower() == "true"
    assert "ImageCacheName" not in query and "ImageCacheSize" not in query


def test_throttling_is_retried_with_the_same_token(tmp_path: Path, registry: Registry) -> None:
    running = make_wire(tmp_path, throttle={"CreateImageCache": 2, "DescribeImageCaches": 1})
    wire = next(running)
    try:
        wire.backend.retry = RetryPolicy.immediate(attempts=4)
        made = wire.backend.create_image_cache(spec(registry, "demo/web:1.0"))
        assert [c.id for c in wire.local.list_image_caches()] == [made.id]
        wire.server.throttle = {"ListUsage": 9}
        with pytest.raises(BackendError, match=r"Throttling\.User"):
            wire.backend.usage()
    finally:
        running.close()
