"""The plugin's hooks through its gRPC face: the installed executable, the protocol's messages,
a real registry and the local backend. What a YAML or TypeScript program (and ``pulumi
import``) gets from the same hooks the dynamic providers serve."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.conftest import Registry

from .client import Plugin, plain, secrets

CACHE = "eci-imagecache:index:ImageCache"
GROUP = "eci-imagecache:index:ContainerGroup"


@pytest.fixture
def plugin(tmp_path: Path) -> Iterator[Plugin]:
    started = Plugin()
    started.configure(dataDir=str(tmp_path / "data"))
    yield started
    started.close()


def checked(plugin: Plugin, type_token: str, name: str, news: dict, olds=None, secret=()):
    response = plugin.check(type_token, name, news, olds, secret)
    assert not response.failures, [(f.property, f.reason) for f in response.failures]
    return response.inputs


def failures(plugin: Plugin, type_token: str, news: dict) -> dict[str, str]:
    response = plugin.check(type_token, "bad", news)
    return {f.property: f.reason for f in response.failures}


def test_a_cache_is_checked_created_imported_updated_and_deleted(
    plugin: Plugin, registry: Registry, tmp_path: Path
) -> None:
    images = [registry.ref("demo/web:1.0"), registry.ref("demo/worker:1.0")]
    declared = {"images": images, "sizeGib": 5, "plainHttpRegistries": [registry.host]}
    inputs = checked(plugin, CACHE, "web", declared)
    seen = plain(inputs)
    assert seen["name"] == "web"  # the resource name, as the dynamic resource defaults it
    assert seen["change"] == "create"
    assert "will fetch" in seen["buildPlan"] or "fetch" in seen["buildPlan"]

    created = plugin.create(CACHE, "web", inputs)
    assert created.id.startswith("imc-")
    outputs = plain(created.properties)
    assert outputs["cacheId"] == created.id
    assert outputs["status"] == "Ready"
    assert outputs["sizeGib"] == 5

    # pulumi import: a read with the id alone gives the inputs that declare the cache
    imported = plugin.read(CACHE, "adopted", created.id)
    assert imported.id == created.id
    imported_inputs = plain(imported.inputs)
    assert imported_inputs == {"name": "web", "images": sorted(images), "sizeGib": 5}
    # ... and a program declaring them has no changes
    again = checked(plugin, CACHE, "adopted", {**imported_inputs}, olds=imported.inputs)
    diff = plugin.diff(CACHE, "adopted", created.id, imported.properties, again)
    assert diff.changes == diff.DIFF_NONE, diff

    bigger = checked(plugin, CACHE, "web", {**declared, "sizeGib": 6}, olds=inputs)
    diff = plugin.diff(CACHE, "web", created.id, created.properties, bigger)
    assert diff.changes == diff.DIFF_SOME
    assert list(diff.replaces) == []
    assert "sizeGib" in diff.detailedDiff
    updated = plugin.update(CACHE, "web", created.id, created.properties, bigger)
    assert plain(updated.properties)["sizeGib"] == 6

    # A destroy is another deployment (another plugin process: within one, a delete of a
    # cache created there is the replaced resource's, and leaves the cache to the new one).
    destroyer = Plugin()
    try:
        destroyer.configure(dataDir=str(tmp_path / "data"))
        destroyer.delete(CACHE, "web", created.id, updated.properties)
        assert destroyer.read(CACHE, "web", created.id, updated.properties, bigger).id == ""
    finally:
        destroyer.close()


def test_malformed_input_is_a_check_failure_naming_the_property(
    plugin: Plugin, registry: Registry
) -> None:
    image = registry.ref("demo/web:1.0")
    assert failures(plugin, CACHE, {"images": [image], "sizeGib": "20"}) == {
        "sizeGib": "expected a whole number, got the string '20'"
    }
    assert failures(plugin, CACHE, {"images": [image], "credentials": "abc"}) == {
        "credentials": "expected a list, got the string 'abc'"
    }
    # Within a property, the reason starts with where (as the hooks' own failures do).
    assert failures(plugin, CACHE, {"images": [image, None]}) == {
        "images": "images[1]: expected a string, got null"
    }
    assert failures(plugin, GROUP, {"containers": [None]}) == {
        "containers": "containers[0]: expected an object, got null"
    }
    assert failures(plugin, GROUP, {"containers": ["nginx"]}) == {
        "containers": "containers[0]: expected an object, got the string 'nginx'"
    }
    assert failures(plugin, GROUP, {"containers": [{"name": "web"}]}) == {
        "containers": "containers[0].image: required, but not given"
    }
    assert failures(plugin, CACHE, {"images": [image], "sizeGb": 5})["sizeGb"].startswith(
        "unknown property; expected one of images, name, sizeGib"
    )
    # The engine's own rules name the property in camelCase too.
    assert set(failures(plugin, CACHE, {"images": [image], "sizeGib": 0})) == {"sizeGib"}
    group = {"containers": [{"name": "web", "image": image, "memoryGib": -1}]}
    assert failures(plugin, GROUP, group) == {
        "containers": "containers[0].memoryGib: Input should be greater than 0"
    }


def test_the_registry_password_is_secret_in_inputs_and_outputs(
    plugin: Plugin, registry: Registry
) -> None:
    image = registry.ref("demo/web:1.0")
    credentials = [{"server": registry.host, "username": "u", "password": "hunter2-pw"}]
    news = {"images": [image], "credentials": credentials, "plainHttpRegistries": [registry.host]}
    inputs = checked(plugin, CACHE, "web", news)
    assert "credentials" in secrets(inputs)
    assert "hunter2-pw" not in str(plain(inputs)["buildPlan"])


def test_a_resource_in_another_location_is_refused_naming_the_plugin_config(
    plugin: Plugin, registry: Registry, tmp_path: Path
) -> None:
    inputs = checked(
        plugin,
        CACHE,
        "web",
        {"images": [registry.ref("demo/web:1.0")], "plainHttpRegistries": [registry.host]},
    )
    created = plugin.create(CACHE, "web", inputs)
    plugin.configure(dataDir=str(tmp_path / "elsewhere"))
    with pytest.raises(grpc.RpcError) as refused:
        plugin.read(CACHE, "web", created.id, created.properties, inputs)
    message = refused.value.details()
    assert "eci-imagecache:dataDir" in message
    assert "Traceback" not in message and 'File "' not in message
    response = plugin.check(CACHE, "web", {"images": ["nginx"]}, olds=created.properties)
    assert [f.property for f in response.failures] == [""]
    assert "eci-imagecache:backend" in response.failures[0].reason


def test_unknown_values_wait_for_the_deployment(plugin: Plugin) -> None:
    from eci_imagecache.plugin.values import UNKNOWN

    response = plugin.check(GROUP, "api", {"containers": UNKNOWN, "cpu": 1})
    assert not response.failures
    assert plain(response.inputs)["containers"] is UNKNOWN


def test_a_group_is_created_imported_with_its_declaration_and_deleted(
    plugin: Plugin, registry: Registry, tmp_path: Path
) -> None:
    image = registry.runnable.references(registry.host)["job_ok"]
    cache_inputs = checked(
        plugin, CACHE, "jobs", {"images": [image], "plainHttpRegistries": [registry.host]}
    )
    cache = plugin.create(CACHE, "jobs", cache_inputs)
    declared = {
        "containers": [{"name": "job", "image": image, "command": ["/bin/true"]}],
        "restartPolicy": "Never",
        "cache": "explicit",
        "cacheId": cache.id,
        "plainHttpRegistries": [registry.host],
    }
    inputs = checked(plugin, GROUP, "job", declared)
    assert plain(inputs)["matchPreview"] == f"explicit: {cache.id}"
    created = plugin.create(GROUP, "job", inputs)
    assert created.id.startswith("eci-")
    assert plain(created.properties)["cacheUsed"] == cache.id

    imported = plugin.read(GROUP, "adopted", created.id)
    assert plain(imported.inputs) == {"name": "job", **declared}
    again = checked(plugin, GROUP, "adopted", plain(imported.inputs), olds=imported.inputs)
    diff = plugin.diff(GROUP, "adopted", created.id, imported.properties, again)
    assert diff.changes == diff.DIFF_NONE, diff

    other = {**declared, "restartPolicy": "OnFailure"}
    diff = plugin.diff(
        GROUP,
        "job",
        created.id,
        created.properties,
        checked(plugin, GROUP, "job", other, olds=inputs),
    )
    assert list(diff.replaces) == ["restartPolicy"]

    destroyer = Plugin()
    try:
        destroyer.configure(dataDir=str(tmp_path / "data"))
        destroyer.delete(GROUP, "job", created.id, created.properties)
        destroyer.delete(CACHE, "jobs", cache.id, cache.properties)
        assert destroyer.read(GROUP, "job", created.id, created.properties, inputs).id == ""
    finally:
        destroyer.close()


def test_price_overrides_come_from_the_provider_config(
    plugin: Plugin, registry: Registry, tmp_path: Path
) -> None:
    news = {"images": [registry.ref("demo/web:1.0")], "plainHttpRegistries": [registry.host]}
    default = plain(checked(plugin, CACHE, "web", news))["cost"]
    assert "overridden" not in default["prices"]
    # As the CLI sends an object from the stack's config: JSON text.
    plugin.configure(dataDir=str(tmp_path / "data"), prices='{"snapshotGibMonth": 1.5}')
    custom = plain(checked(plugin, CACHE, "web", news))["cost"]
    assert custom["prices"].endswith("overridden: snapshotGibMonth")
    assert custom["monthly"] > default["monthly"]
    with pytest.raises(grpc.RpcError) as refused:
        plugin.configure(dataDir=str(tmp_path / "data"), prices={"snapshotGibMonth": -1})
    assert refused.value.details().startswith("eci-imagecache:prices: ")
    assert "Traceback" not in refused.value.details()


def test_a_configuration_problem_is_a_check_failure_naming_the_key(plugin: Plugin) -> None:
    plugin.configure(backend="elsewhere")
    response = plugin.check(CACHE, "web", {"images": ["nginx"]})
    assert [(f.property, f.reason) for f in response.failures] == [
        ("", "eci-imagecache:backend: unknown backend 'elsewhere': use 'local' or 'alicloud'")
    ]
    plugin.configure(backend="alicloud")
    response = plugin.check(CACHE, "web", {"images": ["nginx"]})
    assert [f.reason for f in response.failures] == [
        "eci-imagecache:region: the alicloud backend needs a region (e.g. cn-hangzhou)"
    ]
