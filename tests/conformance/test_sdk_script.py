"""A scripted run of the official SDK, as a user of the ECI API would write it, against the
emulator: what each step answers is what the vendor's reference describes."""

import time
from datetime import datetime, timedelta

import pytest
from alibabacloud_eci20180808 import models as sdk
from alibabacloud_eci20180808.client import Client
from alibabacloud_tea_openapi import models as openapi
from Tea.exceptions import TeaException

from eci_imagecache.backends.emulator.server import EmulatorServer
from eci_imagecache.backends.local.backend import LocalBackend

from ..backend.conftest import FastRegistry
from ..conftest import REGISTRY_USER, Registry
from ..contract.conftest import ACCESS_KEY, REGION, credential


@pytest.fixture
def eci(tmp_path):
    local = LocalBackend(data_dir=tmp_path / "cloud", region=REGION, registry_factory=FastRegistry)
    with EmulatorServer(local, dict([ACCESS_KEY])) as server:
        scheme, _, host = server.endpoint.partition("://")
        config = openapi.Config(
            credential=credential(*ACCESS_KEY), region_id=REGION, endpoint=host, protocol=scheme
        )
        yield Client(config)


def when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def describe(eci: Client, **filters) -> list[sdk.DescribeImageCachesResponseBodyImageCaches]:
    request = sdk.DescribeImageCachesRequest(region_id=REGION, **filters)
    return eci.describe_image_caches(request).body.image_caches


def until(fetch, done, seconds: float = 30):
    deadline = time.monotonic() + seconds
    while not done(value := fetch()):
        assert time.monotonic() < deadline, "not finished in time"
        time.sleep(0.05)
    return value


def group_events(eci: Client, group_id: str) -> list[tuple[str, str]]:
    body = eci.describe_container_group_events(
        sdk.DescribeContainerGroupEventsRequest(
            region_id=REGION, container_group_ids=f'["{group_id}"]'
        )
    ).body
    return [(e.reason, e.message) for d in body.data for e in d.events]


def test_the_official_sdk_script(eci: Client, private_registry: Registry, registry: Registry):
    user, password = REGISTRY_USER
    image = private_registry.ref("demo/web:1.0")
    # Create, with the private registry's credentials.
    created = eci.create_image_cache(
        sdk.CreateImageCacheRequest(
            region_id=REGION,
            image_cache_name="web",
            image=[image],
            image_registry_credential=[
                sdk.CreateImageCacheRequestImageRegistryCredential(
                    server=private_registry.host, user_name=user, password=password
                )
            ],
            elimination_strategy="LRU",
            client_token="script-create-1",
        )
    ).body
    cache_id = created.image_cache_id
    assert cache_id.startswith("imc-") and created.container_group_id  # the build instance
    # Describe until Ready.
    (ready,) = until(
        lambda: describe(eci, image_cache_id=cache_id), lambda c: c and c[0].status == "Ready"
    )
    assert ready.images == [image] and ready.progress == "100%" and ready.snapshot_id
    assert ready.expire_date_time == ""  # permanent until a retention is set
    # Update the retention only: it expires RetentionDays after creation; nothing is rebuilt.
    eci.update_image_cache(
        sdk.UpdateImageCacheRequest(region_id=REGION, image_cache_id=cache_id, retention_days=7)
    )
    (kept,) = until(
        lambda: describe(eci, image_cache_id=cache_id), lambda c: c[0].expire_date_time != ""
    )
    assert when(kept.expire_date_time) - when(kept.creation_time) == timedelta(days=7)
    assert (kept.snapshot_id, kept.images, kept.status) == (ready.snapshot_id, [image], "Ready")
    # RetentionDays is optional: an update without it keeps it (the reference has no value
    # meaning "never expire" again). EliminationStrategy's documented empty value clears LRU.
    eci.update_image_cache(
        sdk.UpdateImageCacheRequest(
            region_id=REGION, image_cache_id=cache_id, elimination_strategy=""
        )
    )
    (cleared,) = describe(eci, image_cache_id=cache_id)
    assert cleared.elimination_strategy == "" and cleared.expire_date_time == kept.expire_date_time
    # MatchImage finds the cache for its image, not for another repository.
    assert [c.image_cache_id for c in describe(eci, match_image=[image])] == [cache_id]
    assert describe(eci, match_image=[registry.ref("demo/tools:1.0")]) == []
    usage = eci.list_usage(sdk.ListUsageRequest(region_id=REGION)).body.attributes
    assert (usage["UsedImageCacheCount"], usage["UsedAutoImageCacheCount"]) == (1, 0)
    # A container group naming the cache by its imc- id: ECI reports the hit as an event.
    named = eci.create_container_group(
        sdk.CreateContainerGroupRequest(
            region_id=REGION,
            container_group_name="named",
            image_snapshot_id=cache_id,
            container=[sdk.CreateContainerGroupRequestContainer(name="web", image=image)],
            image_registry_credential=[
                sdk.CreateContainerGroupRequestImageRegistryCredential(
                    server=private_registry.host, user_name=user, password=password
                )
            ],
        )
    ).body.container_group_id
    assert [r for r, m in group_events(eci, named) if cache_id in m] == ["SuccessfulHitImageCache"]
    # One with automatic matching and no cache for its image: one is made for it.
    tools = registry.ref("demo/tools:1.0")
    auto = eci.create_container_group(
        sdk.CreateContainerGroupRequest(
            region_id=REGION,
            container_group_name="auto",
            auto_match_image_cache=True,
            container=[sdk.CreateContainerGroupRequestContainer(name="tools", image=tools)],
        )
    ).body.container_group_id
    events = group_events(eci, auto)
    reasons = [r for r, m in events if m.startswith("[eci.imagecache]")]
    assert reasons == ["ImageCacheMissed", "ImageCacheAutoCreated"]
    (made_for_it,) = describe(eci, image_cache_name=f"auto-create-for-{auto}")
    assert made_for_it.container_group_id == auto and made_for_it.elimination_strategy == "LRU"
    usage = eci.list_usage(sdk.ListUsageRequest(region_id=REGION)).body.attributes
    assert (usage["UsedImageCacheCount"], usage["UsedAutoImageCacheCount"]) == (1, 1)
    # Delete: the groups, then the cache; a second delete names what is missing.
    for group_id in (named, auto):
        eci.delete_container_group(
            sdk.DeleteContainerGroupRequest(region_id=REGION, container_group_id=group_id)
        )
    eci.delete_image_cache(sdk.DeleteImageCacheRequest(region_id=REGION, image_cache_id=cache_id))
    assert describe(eci, image_cache_id=cache_id) == []
    with pytest.raises(TeaException) as gone:
        eci.delete_image_cache(
            sdk.DeleteImageCacheRequest(region_id=REGION, image_cache_id=cache_id)
        )
    assert gone.value.code.endswith("NotFound") and password not in str(gone.value)
