"""The plugin's schema: valid for Pulumi (its own metaschema), complete (every property the
Python face takes, described), and what other languages rely on (tokens, secrets, names)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from eci_imagecache.dynamic.container_group import ContainerGroupArgs
from eci_imagecache.dynamic.image_cache import ImageCacheArgs
from tests.conftest import missing
from tests.e2e.pulumi_cli import PULUMI_VERSION

from .client import Plugin

TOKENS = {
    "ImageCache": "eci-imagecache:index:ImageCache",
    "ContainerGroup": "eci-imagecache:index:ContainerGroup",
    "CachedContainerGroups": "eci-imagecache:index:CachedContainerGroups",
}


@pytest.fixture(scope="module")
def schema() -> dict:
    """The schema as the CLI gets it: from the installed plugin, over gRPC."""
    plugin = Plugin()
    try:
        return json.loads(plugin.schema())
    finally:
        plugin.close()


def metaschema() -> dict:
    """Pulumi's package metaschema, from the pkg/v3 module the CLI was built from."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "eci-imagecache"
    found = cache / "go" / "mod" / "github.com" / "pulumi" / "pulumi"
    path = found / f"pkg/v3@v{PULUMI_VERSION}" / "codegen" / "schema" / "pulumi.json"
    if not path.is_file():
        missing("Pulumi's metaschema: run scripts/install-pulumi-cli.sh")
    # Its patterns name groups as Go does, (?<name>...); Python's re spells it (?P<name>...).
    return json.loads(path.read_text().replace("(?<", "(?P<"))


def test_the_schema_is_valid_for_pulumi(schema: dict) -> None:
    import jsonschema

    meta = metaschema()
    jsonschema.validators.validator_for(meta)(meta).validate(schema)


def test_the_resources_and_their_types_are_there(schema: dict) -> None:
    assert set(schema["resources"]) == set(TOKENS.values())
    assert schema["resources"][TOKENS["CachedContainerGroups"]]["isComponent"] is True
    for ref in json.dumps(schema["resources"]).split('"#/types/')[1:]:
        assert ref.split('"')[0] in schema["types"]
    password = schema["types"]["eci-imagecache:index:RegistryCredential"]["properties"]
    assert password["password"]["secret"] is True
    assert set(schema["config"]["variables"]) >= {
        "backend",
        "region",
        "dataDir",
        "endpoint",
        "operationTimeout",
        "prices",
        "pricesFile",
    }


@pytest.mark.parametrize(
    ("args", "resource"),
    [(ImageCacheArgs, "ImageCache"), (ContainerGroupArgs, "ContainerGroup")],
)
def test_every_argument_is_an_input_in_camel_case_with_a_description(
    schema: dict, args: type, resource: str
) -> None:
    inputs = schema["resources"][TOKENS[resource]]["inputProperties"]
    names = [f.name for f in dataclasses.fields(args)]
    camel = [n.split("_")[0] + "".join(p.title() for p in n.split("_")[1:]) for n in names]
    assert list(inputs) == camel
    assert all(inputs[n].get("description") for n in camel)


def test_outputs_are_the_dynamic_resources_outputs(schema: dict) -> None:
    cache = schema["resources"][TOKENS["ImageCache"]]["properties"]
    assert {"cacheId", "status", "buildPlan", "change", "cost", "location"} <= set(cache)
    group = schema["resources"][TOKENS["ContainerGroup"]]["properties"]
    assert {"groupId", "matchPreview", "cacheUsed", "matchDegree", "address"} <= set(group)
    assert group["containers"]["items"] == {"$ref": "#/types/eci-imagecache:index:Container"}
