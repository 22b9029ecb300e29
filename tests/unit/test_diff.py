import itertools

import pytest

from eci_imagecache.engine.diff import ChangeKind, diff_cache
from eci_imagecache.engine.models import RegistryCredential

BASE = {
    "backend": "local",
    "region": "local",
    "name": "web",
    "images": ["nginx:1.25", "redis"],
    "size_gib": 20,
    "retention_days": None,
    "eviction": "",
    "instant": False,
    "credentials": [],
    "insecure_registries": [],
}


def test_same_images_in_another_order_and_spelling_is_no_change() -> None:
    new = {**BASE, "images": ["docker.io/library/redis:latest", "nginx:1.25", "nginx:1.25"]}
    diff = diff_cache(BASE, new)
    assert diff.kind == ChangeKind.NONE
    assert diff.changes == []


def test_retention_updates_in_place_only_that_field() -> None:
    diff = diff_cache(BASE, {**BASE, "retention_days": 7})
    assert diff.kind == ChangeKind.UPDATE
    assert diff.changed_fields == ["retention_days"]
    assert diff.summary() == "update in place: retention_days None -> 7"


def test_eviction_spelling_is_normalized() -> None:
    assert diff_cache({**BASE, "eviction": "lru"}, {**BASE, "eviction": "LRU"}).changes == []
    assert diff_cache(BASE, {**BASE, "eviction": "LRU"}).kind == ChangeKind.UPDATE


def test_images_rebuild_and_list_what_changes() -> None:
    diff = diff_cache(BASE, {**BASE, "images": ["nginx:1.27", "redis"]})
    assert diff.kind == ChangeKind.REBUILD
    assert diff.images_added == ["docker.io/library/nginx:1.27"]
    assert diff.images_removed == ["docker.io/library/nginx:1.25"]


def test_size_rebuilds_region_and_backend_replace() -> None:
    assert diff_cache(BASE, {**BASE, "size_gib": 40}).kind == ChangeKind.REBUILD
    diff = diff_cache(BASE, {**BASE, "region": "cn-hangzhou", "retention_days": 3})
    assert diff.kind == ChangeKind.REPLACE
    assert diff.replaced_fields == ["region"]
    assert diff_cache(BASE, {**BASE, "backend": "alicloud"}).replaced_fields == ["backend"]


def test_password_change_is_an_update_that_never_shows_the_password() -> None:
    old = {**BASE, "credentials": [{"server": "r.io", "username": "u", "password": "one-secret"}]}
    new = {**BASE, "credentials": [{"server": "r.io", "username": "u", "password": "two-secret"}]}
    diff = diff_cache(old, new)
    assert diff.kind == ChangeKind.UPDATE
    assert "one-secret" not in diff.summary() and "two-secret" not in diff.summary()
    assert diff_cache(old, old).changes == []


SERVER_SPELLINGS = [
    "r.io",
    "R.IO",
    "https://r.io/",
    "http://r.io",
    " r.io ",
    "s.io",
    "docker.io",
    "https://index.docker.io/v1/",
    "registry-1.docker.io",
]


@pytest.mark.parametrize(("before", "after"), list(itertools.combinations(SERVER_SPELLINGS, 2)))
def test_the_diff_sees_a_server_change_exactly_when_the_model_does(before: str, after: str) -> None:
    """A respelled server (scheme, case, a trailing slash, Docker Hub's aliases) is the same
    registry to the model; the diff agrees (it used to count ``http://`` as a change)."""

    def credentials(server: str) -> list[dict[str, str]]:
        return [{"server": server, "username": "u", "password": "p"}]

    same_to_model = (
        RegistryCredential(**credentials(before)[0]).server
        == RegistryCredential(**credentials(after)[0]).server
    )
    diff = diff_cache(
        {**BASE, "credentials": credentials(before)}, {**BASE, "credentials": credentials(after)}
    )
    assert (diff.changes == []) == same_to_model


def test_fields_outside_the_rules_are_ignored() -> None:
    assert diff_cache({**BASE, "status": "Ready"}, {**BASE, "status": "Creating"}).changes == []


def test_any_group_change_replaces_and_unset_equals_empty() -> None:
    from eci_imagecache.engine.diff import diff_group

    fields = ("containers", "extra_ephemeral_storage_gib", "tags")
    old = {"containers": [{"image": "nginx:1"}], "extra_ephemeral_storage_gib": None, "tags": {}}
    assert diff_group(old, {**old, "tags": None}, fields) == []
    assert diff_group(old, {**old, "extra_ephemeral_storage_gib": 10}, fields) == [
        "extra_ephemeral_storage_gib"
    ]
    new = {**old, "containers": [{"image": "nginx:2"}], "tags": {"a": "b"}}
    assert diff_group(old, new, fields) == ["containers", "tags"]


def test_a_group_recorded_with_empty_container_fields_is_unchanged_without_them() -> None:
    """Groups created before unset container fields were left out of the inputs have them in
    state as empty values: the same program must not replace them."""
    from eci_imagecache.dynamic.container_group import ContainerArgs
    from eci_imagecache.engine.diff import diff_group

    recorded = {
        "containers": [
            {
                "args": [],
                "command": [],
                "env": {},
                "image": "nginx:1",
                "image_pull_policy": "IfNotPresent",
                "name": "web",
                "ports": [],
            }
        ]
    }
    declared = ContainerArgs(name="web", image="nginx:1").to_input()
    assert declared == {"name": "web", "image": "nginx:1", "image_pull_policy": "IfNotPresent"}
    assert diff_group(recorded, {"containers": [declared]}, ["containers"]) == []
    with_args = ContainerArgs(name="web", image="nginx:1", args=["-g", "daemon off;"])
    assert diff_group(recorded, {"containers": [with_args.to_input()]}, ["containers"]) == [
        "containers"
    ]
