"""YAML programs and ``pulumi import`` through the provider plugin, under the real CLI and the
YAML language host built by scripts/install-language-hosts.sh, on the local backend."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from eci_imagecache.engine.models import ContainerGroupSpec, ImageCacheSpec
from tests.conftest import REGISTRY_USER, Registry, missing
from tests.support.fault_proxy import FaultProxy

from .pulumi_cli import REPO, Stack
from .test_lifecycle import (  # noqa: F401 (slow_registry: a fixture)
    commands,
    kill_all,
    slow_registry,
    start_up_and_kill_mid_build,
    wait_until_ours_end,
)

pytestmark = pytest.mark.e2e
PLUGIN = "pulumi-resource-eci-imagecache"


@pytest.fixture(scope="session")
def yaml_host(pulumi_bin: Path) -> Path:
    if not (pulumi_bin / "pulumi-language-yaml").is_file():
        missing("no YAML language host: run scripts/install-language-hosts.sh")
    return pulumi_bin


def yaml_project(directory: Path, resources: str = "", name: str = "imported") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Pulumi.yaml").write_text(f"name: {name}\nruntime: yaml\n{resources}")
    return directory


def test_yaml_program_creates_updates_and_destroys(
    yaml_host: Path, tmp_path: Path, registry: Registry
) -> None:
    stack = Stack(project_dir=REPO / "examples" / "yaml", work=tmp_path).init(
        {"registry": registry.host}
    )
    stack.run("up", "--yes", "--skip-preview")
    outputs = stack.outputs()
    backend = stack.backend()
    caches = {c.id: c for c in backend.list_image_caches()}
    assert set(caches) == {outputs["cacheId"], outputs["teamCache"]}
    assert caches[outputs["cacheId"]].size_gib == 5
    assert outputs["cacheStatus"] == "Ready"
    assert outputs["webCache"] == outputs["cacheId"]  # the group used the cache it named
    groups = {g.id: g for g in backend.list_container_groups()}
    assert set(outputs["teamGroups"]) == {"worker"}
    assert groups[outputs["teamGroups"]["worker"]].cache_id == outputs["teamCache"]
    assert len(groups) == 2

    stack.run("preview", "--expect-no-changes")
    stack.run("refresh", "--yes", "--skip-preview", "--expect-no-changes")

    stack.run("config", "set", "sizeGib", "6")
    preview = stack.run("preview", "--diff")
    assert "sizeGib" in preview.stdout and "replace" not in preview.stdout
    stack.run("up", "--yes", "--skip-preview")
    after = stack.outputs()
    assert after["cacheId"] == outputs["cacheId"]  # updated in place
    assert backend.get_image_cache(outputs["cacheId"]).size_gib == 6
    assert {g.id for g in backend.list_container_groups()} == set(groups)  # not replaced
    stack.run("preview", "--expect-no-changes")

    stack.run("destroy", "--yes", "--skip-preview")
    assert backend.list_image_caches() == [] and backend.list_container_groups() == []


def test_import_a_cache_and_a_group_then_preview_shows_no_changes(
    yaml_host: Path, tmp_path: Path, registry: Registry
) -> None:
    stack = Stack(project_dir=yaml_project(tmp_path / "project"), work=tmp_path).init()
    backend = stack.backend()
    cache = backend.create_image_cache(
        ImageCacheSpec(
            name="made-by-hand",
            images=[registry.ref("demo/web:1.0"), registry.ref("demo/worker:1.0")],
            size_gib=7,
            eviction="LRU",
        )
    )
    group = backend.create_container_group(
        ContainerGroupSpec(
            name="web-by-hand",
            containers=[{"name": "web", "image": registry.ref("demo/web:1.0"), "ports": [80]}],
            restart_policy="Never",
            cache="explicit",
            cache_id=cache.id,
        )
    )
    resources = {}
    for type_token, name, resource_id in (
        ("eci-imagecache:index:ImageCache", "cache", cache.id),
        ("eci-imagecache:index:ContainerGroup", "web", group.id),
    ):
        generated = tmp_path / f"{name}.yaml"
        stack.run(
            "import",
            "--yes",
            "--protect=false",
            "--out",
            str(generated),
            type_token,
            name,
            resource_id,
        )
        resources.update(yaml.safe_load(generated.read_text())["resources"])
    assert resources["cache"]["properties"] == {
        "name": "made-by-hand",
        "images": sorted([registry.ref("demo/web:1.0"), registry.ref("demo/worker:1.0")]),
        "sizeGib": 7,
        "eviction": "LRU",
    }
    assert resources["web"]["properties"] == {
        "name": "web-by-hand",
        "containers": [{"name": "web", "image": registry.ref("demo/web:1.0"), "ports": [80]}],
        "restartPolicy": "Never",
        "cache": "explicit",
        "cacheId": cache.id,
    }
    state = {r["urn"].rsplit("::", 1)[-1]: r for r in stack.state()["resources"]}
    assert state["cache"]["id"] == cache.id and state["web"]["id"] == group.id

    # The program is what the imports generated: a preview of it has no changes.
    yaml_project(stack.project_dir, yaml.safe_dump({"resources": resources}))
    stack.run("preview", "--expect-no-changes")

    stack.run("destroy", "--yes", "--skip-preview")
    assert backend.list_image_caches() == [] and backend.list_container_groups() == []


@pytest.mark.parametrize(
    ("properties", "named"),
    [
        ('images: ["{registry}/demo/web:1.0"]\n      sizeGib: "20"', "sizeGib"),
        ('images: ["{registry}/demo/web:1.0"]\n      credentials: oops', "credentials"),
        ('images: ["{registry}/demo/web:1.0", null]', "images"),
    ],
    ids=["number-as-string", "string-for-list", "null-in-list"],
)
def test_a_malformed_property_fails_the_preview_naming_it(
    yaml_host: Path, tmp_path: Path, registry: Registry, properties: str, named: str
) -> None:
    program = (
        "resources:\n  cache:\n    type: eci-imagecache:index:ImageCache\n    properties:\n      "
        + properties.replace("{registry}", registry.host)
        + "\n"
    )
    stack = Stack(project_dir=yaml_project(tmp_path / "project", program), work=tmp_path).init()
    preview = stack.run("preview", check=False)
    output = preview.stdout + preview.stderr
    assert preview.returncode != 0
    assert re.search(rf"\b{named}\b", output), output
    assert "Traceback" not in output, output
    assert stack.backend().list_image_caches() == []


def test_get_schema_prints_the_package(yaml_host: Path, tmp_path: Path) -> None:
    stack = Stack(project_dir=yaml_project(tmp_path / "project"), work=tmp_path)
    # By the executable's path: a bare name is looked up in Pulumi's package registry.
    plugin = Path(sys.executable).parent / "pulumi-resource-eci-imagecache"
    printed = stack.run("package", "get-schema", str(plugin))
    schema = json.loads(printed.stdout)
    assert "eci-imagecache:index:CachedContainerGroups" in schema["resources"]


def test_the_plugin_ends_after_its_build_when_the_cli_is_killed(
    yaml_host: Path,
    tmp_path: Path,
    slow_registry: FaultProxy,  # noqa: F811 (the fixture imported above)
) -> None:
    """A CLI killed with SIGKILL cannot stop its plugins: ours finishes the build it runs, then
    ends (as the dynamic providers' process does), instead of serving nobody for good."""
    stack = Stack(project_dir=REPO / "examples" / "yaml", work=tmp_path).init(
        {"registry": slow_registry.host}
    )
    left = start_up_and_kill_mid_build(stack, whole_session=False)
    try:
        assert any(PLUGIN in commands(p) for p in left), [commands(p) for p in left]
        wait_until_ours_end(left, names=(PLUGIN,))
    finally:
        kill_all(left)


def test_import_a_cache_and_a_group_through_the_emulator_then_preview_shows_no_changes(
    yaml_host: Path, tmp_path: Path, registry: Registry
) -> None:
    """The alicloud backend (the official SDK) against the ECI OpenAPI emulator: the cache and
    the group are read by DescribeImageCaches / DescribeContainerGroups, and their inputs are
    what the API reports."""
    from eci_imagecache.backends.alicloud import AliCloudBackend
    from eci_imagecache.backends.emulator.server import EmulatorServer
    from eci_imagecache.backends.local.backend import LocalBackend
    from tests.contract.conftest import credential

    key_id, key_secret = "LTAI-e2e-plugin", "e2e-secret-Qp7"
    cloud = LocalBackend(data_dir=tmp_path / "cloud", region="cn-hangzhou")
    with EmulatorServer(cloud, {key_id: key_secret}) as emulator:
        console = AliCloudBackend(
            region="cn-hangzhou",
            endpoint=emulator.endpoint,
            credential=credential(key_id, key_secret),
            poll_interval=0.05,
            timeout=60,
        )
        web = registry.ref("demo/web:1.0")
        cache = console.create_image_cache(
            ImageCacheSpec(name="made-in-the-console", images=[web], size_gib=9, retention_days=30)
        )
        group = console.create_container_group(
            ContainerGroupSpec(
                name="web-in-the-console",
                containers=[{"name": "web", "image": web, "ports": [80], "args": ["-v"]}],
                restart_policy="Never",
                cache="explicit",
                cache_id=cache.id,
            )
        )
        stack = Stack(
            project_dir=yaml_project(tmp_path / "project"),
            work=tmp_path / "stack",
            extra_env={
                "ALIBABA_CLOUD_ACCESS_KEY_ID": key_id,
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": key_secret,
            },
        ).init(
            {
                "eci-imagecache:backend": "alicloud",
                "eci-imagecache:region": "cn-hangzhou",
                "eci-imagecache:endpoint": emulator.endpoint,
            }
        )
        resources = {}
        for type_token, name, resource_id in (
            ("eci-imagecache:index:ImageCache", "cache", cache.id),
            ("eci-imagecache:index:ContainerGroup", "web", group.id),
        ):
            generated = tmp_path / f"{name}.yaml"
            stack.run(
                "import",
                "--yes",
                "--protect=false",
                "--out",
                str(generated),
                type_token,
                name,
                resource_id,
            )
            resources.update(yaml.safe_load(generated.read_text())["resources"])
        assert resources["cache"]["properties"] == {
            "name": "made-in-the-console",
            "images": [web],
            "sizeGib": 9,
            "retentionDays": 30,
        }
        declared = resources["web"]["properties"]
        assert declared["containers"] == [
            {"name": "web", "image": web, "ports": [80], "args": ["-v"]}
        ]
        assert declared["restartPolicy"] == "Never"
        assert (declared["cache"], declared["cacheId"]) == ("explicit", cache.id)
        yaml_project(stack.project_dir, yaml.safe_dump({"resources": resources}))
        stack.run("preview", "--expect-no-changes")
        stack.run("destroy", "--yes", "--skip-preview")
        assert cloud.list_image_caches() == [] and cloud.list_container_groups() == []
        assert key_secret not in stack.export()


def test_a_registry_password_from_yaml_stays_secret(
    yaml_host: Path, tmp_path: Path, private_registry: Registry
) -> None:
    user, password = REGISTRY_USER
    program = f"""
config:
  password:
    type: string
    secret: true
resources:
  cache:
    type: eci-imagecache:index:ImageCache
    properties:
      images: ["{private_registry.ref("demo/web:1.0")}"]
      credentials:
        - server: "{private_registry.host}"
          username: "{user}"
          password: ${{password}}
outputs:
  status: ${{cache.status}}
"""
    stack = Stack(project_dir=yaml_project(tmp_path / "project", program), work=tmp_path).init(
        secrets={"password": password}
    )
    up = stack.run("up", "--yes", "--skip-preview")
    assert stack.outputs()["status"] == "Ready"
    state = stack.export()
    assert password not in state and "ciphertext" in state
    assert password not in up.stdout + up.stderr
    assert password not in stack.run("preview", "--diff").stdout
    for path in (stack.work / "eci-data").rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path
    stack.run("destroy", "--yes", "--skip-preview")
