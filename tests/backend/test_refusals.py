"""Bad input stops at ``check``, naming the property, whatever JSON the providers receive; and a
create that fails anyway leaves nothing behind: no record, directory, mount, process or
snapshot, and an error that names the group in one line.

``check`` runs here as the provider process runs it, on a local backend in a temporary
directory, asking the real registry of the tests (every image reference the inputs hold is
moved onto it: nothing leaves loopback)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pulumi.dynamic import CheckResult

from eci_imagecache.backends.base import BackendError, BackendImageNotFound
from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.dynamic.container_group_provider import ContainerGroupProvider
from eci_imagecache.dynamic.image_cache_provider import ImageCacheProvider
from eci_imagecache.engine.models import (
    ContainerGroupSpec,
    ContainerSpec,
    ImageCacheSpec,
)
from eci_imagecache.engine.refs import ImageRefError, parse_image_ref
from eci_imagecache.runtime import host

from ..conftest import Registry, missing
from ..unit.test_validation import FIELD_VALUES, json_values, near

# Inputs the program sends besides the spec's (where the resource lives is left out: a
# configuration problem is reported against the stack, not a property).
EXTRA_CACHE_INPUTS = ("adopt_id", "prices")
EXTRA_GROUP_INPUTS = ("stack_caches", "prices")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The providers' backend (``$ECI_IMAGECACHE_HOME``, as when no ``eci:dataDir`` is set)."""
    path = tmp_path_factory.mktemp("check-data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ECI_IMAGECACHE_HOME", str(path))
        yield path


def on_test_registry(registry: Registry, text: Any) -> Any:
    """An image reference moved onto the test registry (anything else as it is)."""
    try:
        ref = parse_image_ref(text)
    except ImageRefError:
        return text
    return text if ref.registry == registry.host else registry.ref(ref.repository)


def onto(registry: Registry, news: dict[str, Any]) -> dict[str, Any]:
    """``news`` with the images a check asks the registry for on the test registry: those of
    ``images`` and of each container (the only ones a valid spec holds)."""
    news = dict(news)
    if isinstance(news.get("images"), list):
        news["images"] = [on_test_registry(registry, i) for i in news["images"]]
    for key in ("containers", "init_containers"):
        if isinstance(news.get(key), list):
            news[key] = [
                {**c, "image": on_test_registry(registry, c["image"])}
                if isinstance(c, dict) and "image" in c
                else c
                for c in news[key]
            ]
    return news


def inputs(fields: tuple[str, ...], extra: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    strategies = {
        name: FIELD_VALUES.get(name, near(st.integers(-3, 3000), st.text(max_size=8)))
        for name in (*fields, *extra)
    }
    return st.fixed_dictionaries({}, optional=strategies)


def refused_or_accepted_naming_properties(
    result: CheckResult, news: dict[str, Any], inputs: tuple[str, ...]
) -> None:
    """Each failure names an input: one given, or one the resource takes (missing)."""
    assert isinstance(result, CheckResult)
    event("refused" if result.failures else "accepted")  # --hypothesis-show-statistics
    for failure in result.failures or []:
        assert failure.property in news or failure.property in inputs, failure.__dict__
        assert failure.reason and "\n" not in failure.reason


def known_images(registry: Registry) -> st.SearchStrategy[str]:
    return st.sampled_from([registry.ref("demo/web:1.0"), registry.ref("demo/missing:1")])


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_cache_check_refuses_any_json_naming_a_property(
    data_dir: Path, registry: Registry, data: st.DataObject
) -> None:
    fields = tuple(ImageCacheSpec.model_fields)
    news = onto(registry, data.draw(inputs(fields, EXTRA_CACHE_INPUTS)))
    if data.draw(st.booleans()):
        news["images"] = data.draw(st.lists(known_images(registry), min_size=1, max_size=2))
    result = ImageCacheProvider().check({}, news)
    refused_or_accepted_naming_properties(result, news, (*fields, *EXTRA_CACHE_INPUTS))


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_group_check_refuses_any_json_naming_a_property(
    data_dir: Path, registry: Registry, data: st.DataObject
) -> None:
    fields = tuple(ContainerGroupSpec.model_fields)
    news = onto(registry, data.draw(inputs(fields, EXTRA_GROUP_INPUTS)))
    if data.draw(st.booleans()):
        image = data.draw(known_images(registry))
        news["containers"] = [{"name": "web", "image": image}]
    if data.draw(st.booleans()):
        news["stack_caches"] = data.draw(st.lists(json_values, max_size=2))
    result = ContainerGroupProvider().check({}, news)
    refused_or_accepted_naming_properties(result, news, (*fields, *EXTRA_GROUP_INPUTS))


def test_a_valid_group_passes_check(data_dir: Path, registry: Registry) -> None:
    """The other side of the property: what is valid is not refused."""
    news = {"name": "api", "containers": [{"name": "web", "image": registry.ref("demo/web:1.0")}]}
    result = ContainerGroupProvider().check({}, news)
    assert result.failures == []
    assert "would be created automatically" in result.inputs["match_preview"]


@pytest.mark.parametrize(
    ("containers", "reason"),
    [
        (["nginx"], "item 0 is 'nginx', not a container"),
        (
            [{"name": "web", "image": "IMAGE"}, {"name": "web", "image": "IMAGE"}],
            "containers[1].name: 'web' is already the name of containers[0]",
        ),
        (
            [{"name": "web", "image": "IMAGE", "ports": [70000]}],
            "containers[0].ports[0]: Input should be less than or equal to 65535",
        ),
    ],
)
def test_group_check_refuses_before_anything_is_made(
    data_dir: Path, registry: Registry, containers: list[Any], reason: str
) -> None:
    image = registry.ref("demo/web:1.0")
    containers = [
        {k: image if v == "IMAGE" else v for k, v in c.items()} if isinstance(c, dict) else c
        for c in containers
    ]
    news = {"name": "bad", "containers": containers}
    result = ContainerGroupProvider().check({}, news)
    [failure] = result.failures
    assert failure.property == "containers" and failure.reason.startswith(reason)
    assert not any((data_dir / "groups").glob("*"))


def test_credentials_no_image_uses_are_a_warning_for_a_group(
    data_dir: Path, registry: Registry
) -> None:
    news = {
        "name": "api",
        "containers": [{"name": "web", "image": registry.ref("demo/web:1.0")}],
        "credentials": [{"server": "other.example.com", "username": "u", "password": "p"}],
    }
    result = ContainerGroupProvider().check({}, news)
    assert result.failures == []
    assert "no image comes from other.example.com" in result.inputs["match_preview"]


def test_cache_check_refuses_an_adopt_id_that_is_no_cache_id(
    data_dir: Path, registry: Registry
) -> None:
    news = {"name": "web", "images": [registry.ref("demo/web:1.0")], "adopt_id": "../../etc"}
    result = ImageCacheProvider().check({}, news)
    assert [(f.property, f.reason) for f in result.failures] == [
        ("adopt_id", "'../../etc' is not the id of an image cache (imc-...)")
    ]


def test_cache_check_names_the_size_when_the_images_do_not_fit(
    data_dir: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backend plans the build against the real registry and refuses the size: the failure
    is against size_gib (it was against images, the backend's message read as an image's)."""
    import eci_imagecache.engine.planner as planner

    monkeypatch.setattr(planner, "GIB", 1024)  # the sample layers are small: a GiB of 1 KiB
    news = {"name": "web", "images": [registry.ref("demo/web:1.0")], "size_gib": 1}
    result = ImageCacheProvider().check({}, news)
    [failure] = result.failures
    assert failure.property == "size_gib"
    assert re.fullmatch(r"the images need .*, more than the cache size of 1 GiB", failure.reason)


@pytest.mark.parametrize("resource", ["cache", "group"])
def test_both_providers_say_which_registry_lacks_credentials(
    data_dir: Path, private_registry: Registry, resource: str
) -> None:
    """A registry that refuses: the failure is against credentials and names the registry no
    credentials are given for, else asks to check the ones given (one rule, both providers)."""
    image = private_registry.ref("demo/web:1.0")
    host = private_registry.host
    wrong = [{"server": host, "username": "nobody", "password": "wrong-password"}]

    def check(credentials: list[dict[str, str]]) -> CheckResult:
        if resource == "cache":
            news = {"name": "web", "images": [image], "credentials": credentials}
            return ImageCacheProvider().check({}, news)
        news = {
            "name": "api",
            "containers": [{"name": "web", "image": image}],
            "credentials": credentials,
        }
        return ContainerGroupProvider().check({}, news)

    [missing_one] = check([]).failures
    assert missing_one.property == "credentials"
    assert missing_one.reason.endswith(f"; no credentials are given for {host}")
    [refused] = check(wrong).failures
    assert refused.property == "credentials"
    assert refused.reason.endswith("; check the username and password")
    assert "wrong-password" not in refused.reason


# A create that fails anyway ------------------------------------------------------------------


def leftovers(backend: LocalBackend) -> dict[str, Any]:
    """What a group's create could leave: records, directories, runtime rows, snapshots."""
    groups_dir = backend.ctx.groups_dir
    return {
        "groups": backend.list_container_groups(),
        "caches": backend.list_image_caches(),
        "group directories": sorted(os.listdir(groups_dir)) if groups_dir.exists() else [],
        "runtime groups": backend.ctx.runtime.group_ids(),
        "snapshots": list(backend.ctx.snapshots.ids()),
    }


NOTHING: dict[str, Any] = {
    "groups": [],
    "caches": [],
    "group directories": [],
    "runtime groups": [],
    "snapshots": [],
}


def test_a_create_the_registry_refuses_leaves_nothing(backend: LocalBackend, registry) -> None:
    spec = ContainerGroupSpec(
        name="gone-image", containers=[{"name": "web", "image": registry.ref("demo/gone:1")}]
    )
    with pytest.raises(BackendImageNotFound) as info:
        backend.create_container_group(spec)
    assert str(info.value).startswith("container group gone-image: ")
    assert "\n" not in str(info.value)
    assert leftovers(backend) == NOTHING


def test_a_create_the_runtime_refuses_leaves_nothing(backend: LocalBackend, registry) -> None:
    """Two containers of one name, past validation (a spec built without it): the runtime's
    state refuses the second. Before, sqlite3.IntegrityError came out as a traceback and the
    snapshot of the group's automatic cache stayed on disk."""
    reason = host.unavailable()
    if reason:
        missing(f"containers cannot run here: {reason}")
    image = parse_image_ref(registry.runnable.references(registry.host)["job_ok"])
    twin = ContainerSpec(name="main", image=image)
    spec = ContainerGroupSpec.model_construct(
        name="twins", containers=[twin, twin], restart_policy="Never"
    )
    with pytest.raises(BackendError) as info:
        backend.create_container_group(spec)
    message = str(info.value)
    assert message.startswith("container group twins was not created: ")
    assert "UNIQUE constraint failed" in message and "\n" not in message
    assert leftovers(backend) == NOTHING
