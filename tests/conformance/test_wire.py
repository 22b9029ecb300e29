"""Both directions of the wire, judged by the official SDK's models and docstrings.

A deploy-like run (caches with every cloud field, an update, matching, usage, groups naming a
cache by id and matching automatically, reads, deletes) goes through the alicloud backend and
the official SDK to the emulator; every call is recorded. Then:
- every answer parses with the SDK's response model: no key it does not read, no key it reads
  missing (recursively);
- every request uses only the request model's fields, has its required ones, and stays within
  the documented limits.
"""

import json
import re

import pytest

from eci_imagecache.engine.models import ContainerGroupSpec, ImageCacheSpec

from ..conftest import Registry
from .conftest import Wire
from .sdk_shapes import (
    ACTIONS,
    MAX_ITEMS,
    MAX_JSON_IDS,
    MAX_VALUE,
    missing_keys,
    shape,
    unflatten,
    unknown_keys,
)

SERVED = set(ACTIONS)


def deploy_like_run(wire: Wire, registry: Registry) -> None:
    b = wire.backend
    web = ImageCacheSpec(
        name="web",
        images=[registry.ref("demo/web:1.0"), registry.ref("demo/worker:1.0")],
        retention_days=5,
        eviction="LRU",
        tags={"team": "web", "env": "ci"},
        resource_group_id="rg-aek2example",
        zone_id="cn-hangzhou-h",
        standard_copies=2,
        instant=True,
        layer_reuse=True,
        acr_registries=[{"instance_id": "cri-example", "domains": ["example.cr.aliyuncs.com"]}],
        vswitch_id="vsw-example",
        security_group_id="sg-example",
    )
    made = b.create_image_cache(web)
    # The same declaration with a longer retention: only RetentionDays may travel.
    b.update_image_cache(made.id, web.model_copy(update={"retention_days": 9}))
    b.list_image_caches()
    b.events(made.id)
    b.usage()
    containers = [{"name": "web", "image": registry.ref("demo/web:1.0"), "ports": [80]}]
    explicit = b.create_container_group(
        ContainerGroupSpec(
            name="explicit",
            containers=containers,
            cache="explicit",
            cache_id=made.id,
            auto_create_eip=True,
            eip_bandwidth_mbps=10,
            tags={"team": "web"},
        )
    )
    matched = b.create_container_group(
        ContainerGroupSpec(name="matched", containers=containers, cache="auto")
    )
    auto = b.create_container_group(
        ContainerGroupSpec(
            name="auto",
            containers=[{"name": "tools", "image": registry.ref("demo/tools:1.0")}],
            cache="auto-create",
        )
    )
    b.list_container_groups()
    for group in (explicit, matched, auto):
        b.delete_container_group(group.id)
    b.delete_image_cache(made.id)


@pytest.fixture
def recorded(wire: Wire, registry: Registry) -> list[tuple[str, dict, dict]]:
    deploy_like_run(wire, registry)
    return wire.client.calls


def test_the_run_covers_every_action(recorded) -> None:
    assert {action for action, _, _ in recorded} == SERVED


def test_every_answer_parses_with_the_sdk_model(recorded) -> None:
    for action, _, body in recorded:
        model = ACTIONS[action][1]
        assert unknown_keys(model, body) == [], action
        assert missing_keys(model, body) == [], action


def test_list_usage_answers_the_documented_attributes(recorded) -> None:
    documented = set(re.findall(r"\*\s+(\w+):", shape(ACTIONS["ListUsage"][1]).docs["Attributes"]))
    assert {"UsedImageCacheCount", "UsedAutoImageCacheCount"} <= documented
    for action, _, body in recorded:
        if action == "ListUsage":
            assert set(body["Attributes"]) == documented


def test_every_request_uses_documented_fields_within_limits(recorded) -> None:
    for action, query, _ in recorded:
        model = ACTIONS[action][0]
        data = unflatten(query)
        assert unknown_keys(model, data) == [], action
        assert shape(model).required <= set(data), action
        for (limited, name), most in MAX_ITEMS.items():
            if limited == action and name in data:
                assert len(data[name]) <= most, (action, name)
        for (limited, name), most in MAX_VALUE.items():
            if limited == action and name in data:
                assert 1 <= int(data[name]) <= most, (action, name)
        for (limited, name), most in MAX_JSON_IDS.items():
            if limited == action and name in data:
                assert len(json.loads(data[name])) <= most, (action, name)
        if "ClientToken" in data:
            token = data["ClientToken"]
            assert token.isascii() and 0 < len(token) <= 64, action


def test_a_group_names_its_cache_by_the_image_cache_id(recorded) -> None:
    """CreateContainerGroup.ImageSnapshotId: "The ID of the image cache" (imc-...)."""
    created = [q for a, q, _ in recorded if a == "CreateImageCache"]
    cache_id = next(b["ImageCacheId"] for a, _, b in recorded if a == "CreateImageCache")
    groups = [q for a, q, _ in recorded if a == "CreateContainerGroup"]
    assert created and cache_id.startswith("imc-")
    assert [q.get("ImageSnapshotId") for q in groups][:1] == [cache_id]
    assert groups[0]["AutoCreateEip"].lower() == "true" and groups[0]["EipBandwidth"] == "10"
    assert groups[2]["AutoMatchImageCache"].lower() == "true" and "ImageSnapshotId" not in groups[2]


def test_cloud_fields_travel_on_create(recorded) -> None:
    (query,) = [q for a, q, _ in recorded if a == "CreateImageCache"]
    assert query["ResourceGroupId"] == "rg-aek2example" and query["ZoneId"] == "cn-hangzhou-h"
    assert query["StandardCopyCount"] == "2"
    assert query["AcrRegistryInfo.1.InstanceId"] == "cri-example"
    assert query["AcrRegistryInfo.1.Domain.1"] == "example.cr.aliyuncs.com"
    assert {query["Tag.1.Key"], query["Tag.2.Key"]} == {"team", "env"}


def test_an_update_sends_only_what_changed(recorded) -> None:
    """Retention alone changed: no Image or ImageCacheSize (which could rebuild on the cloud)."""
    (query,) = [q for a, q, _ in recorded if a == "UpdateImageCache"]
    sent = set(unflatten(query))
    assert sent == {"RegionId", "ImageCacheId", "ClientToken", "RetentionDays"}
    assert query["RetentionDays"] == "9"
