"""Pulumi conventions users rely on: documented args, keyword arguments, pulumi-alicloud's names,
no committed stack salts, ECI's naming rules, settings that name their key."""

import base64
import dataclasses
import inspect
import re
import subprocess
import sys
from pathlib import Path

import dill
import pulumi
import pytest
from pulumi.dynamic import ResourceProvider
from pydantic import ValidationError

from eci_imagecache.components import CachedContainerGroupsArgs
from eci_imagecache.dynamic import (
    ContainerArgs,
    ContainerGroupArgs,
    ImageCacheArgs,
    RegistryCredentialArgs,
)
from eci_imagecache.dynamic.common import args_from, client_token, secret_credentials
from eci_imagecache.dynamic.image_cache import ALICLOUD_NAMES, ALICLOUD_UNSUPPORTED
from eci_imagecache.dynamic.settings import settings_from_config
from eci_imagecache.engine.diff import diff_cache
from eci_imagecache.engine.models import ContainerGroupSpec

REPO = Path(__file__).resolve().parents[2]
PUBLIC_ARGS = [
    ImageCacheArgs,
    RegistryCredentialArgs,
    ContainerGroupArgs,
    ContainerArgs,
    CachedContainerGroupsArgs,
]


@pytest.mark.parametrize("cls", PUBLIC_ARGS, ids=lambda c: c.__name__)
def test_every_public_args_class_documents_every_field(cls: type) -> None:
    doc = inspect.getdoc(cls) or ""
    missing = [f.name for f in dataclasses.fields(cls) if f"``{f.name}``" not in doc]
    assert not missing, f"{cls.__name__} does not document {missing}"


def test_alicloud_image_cache_names_map_to_ours_and_exist_in_pulumi_alicloud() -> None:
    from pulumi_alicloud.eci import ImageCacheArgs as AliArgs
    from pulumi_alicloud.eci import ImageCacheImageRegistryCredentialArgs as AliCredential

    theirs = set(inspect.signature(AliArgs.__init__).parameters) - {"__self__"}
    ours = {f.name for f in dataclasses.fields(ImageCacheArgs)}
    assert set(ALICLOUD_NAMES) | set(ALICLOUD_UNSUPPORTED) <= theirs
    assert set(ALICLOUD_NAMES.values()) <= ours
    # Every name of theirs is accepted, mapped, or refused with a reason.
    assert theirs <= ours | set(ALICLOUD_NAMES) | set(ALICLOUD_UNSUPPORTED)
    args = args_from(
        ImageCacheArgs,
        None,
        {"image_cache_name": "web", "images": ["nginx:1.25"], "image_cache_size": 30},
        ALICLOUD_NAMES,
    )
    assert (args.name, args.size_gib) == ("web", 30)
    credential = AliCredential(server="r.example.com", user_name="ci", password="pw")
    assert set(inspect.signature(AliCredential.__init__).parameters) >= {"user_name", "server"}
    [converted] = secret_credentials([credential])
    assert (converted["server"], converted["username"]) == ("r.example.com", "ci")


def test_args_as_object_dict_or_keywords_and_clear_errors() -> None:
    by_object = args_from(ImageCacheArgs, ImageCacheArgs(images=["nginx"]), {})
    by_keywords = args_from(ImageCacheArgs, None, {"images": ["nginx"]})
    by_dict = args_from(ImageCacheArgs, {"images": ["nginx"]}, {})
    assert by_object == by_keywords == by_dict
    with pytest.raises(TypeError, match="not both"):
        args_from(ImageCacheArgs, by_object, {"images": ["redis"]})
    with pytest.raises(TypeError, match="unknown argument 'imagez'"):
        args_from(ImageCacheArgs, None, {"imagez": ["nginx"]})
    with pytest.raises(TypeError, match="zone_id is not supported: a reason"):
        args_from(ImageCacheArgs, None, {"zone_id": "z"}, {}, {"zone_id": "a reason"})
    with pytest.raises(TypeError, match="name the same argument"):
        args_from(ImageCacheArgs, None, {"name": "a", "image_cache_name": "b"}, ALICLOUD_NAMES)


def test_no_committed_stack_file_holds_a_passphrase_salt() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "*Pulumi.*.yaml"], cwd=REPO, capture_output=True, text=True
    ).stdout.split()
    for name in tracked:
        assert "encryptionsalt" not in (REPO / name).read_text(), name


def test_group_names_follow_ecis_rule_from_the_sdk() -> None:
    from alibabacloud_eci20180808 import models

    source = inspect.getsource(models.CreateContainerGroupRequest.__init__)
    rule = source[: source.index("self.container_group_name =")].rsplit("# The name", 1)[1]
    assert "2 to 128 characters" in rule
    assert "lowercase letters, digits, and hyphens" in rule
    assert "cannot start or end with a hyphen" in rule
    container = [{"name": "c", "image": "nginx"}]
    for good in ("ab", "web-1", "a" * 128):
        ContainerGroupSpec(name=good, containers=container)
    for bad in ("a", "a" * 129, "-web", "web-", "Web", "web_api", "web.api"):
        with pytest.raises(ValidationError, match="not a valid container group name"):
            ContainerGroupSpec(name=bad, containers=container)


def test_credential_changes_say_what_for_which_registry_never_the_value() -> None:
    def cred(server: str, password: str, username: str = "ci") -> dict:
        return {"server": server, "username": username, "password": password}

    old = {"credentials": [cred("a.example.com", "one"), cred("b.example.com", "two")]}
    new = {"credentials": [cred("a.example.com", "uno"), cred("c.example.com", "three")]}
    [change] = diff_cache(old, new).changes
    assert change.detail == (
        "credentials added for c.example.com, removed for b.example.com, "
        "password rotated for a.example.com"
    )
    assert not re.search(r"one|uno|two|three", change.detail)


def test_settings_name_their_key_and_the_location() -> None:
    local = settings_from_config({"eci:dataDir": "/srv/eci"})
    assert local.location == "local backend at /srv/eci"
    cloud = settings_from_config({"eci:backend": "alicloud", "eci:region": "cn-hangzhou"})
    assert (
        cloud.location == "alicloud backend in cn-hangzhou at https://eci.cn-hangzhou.aliyuncs.com"
    )
    assert settings_from_config({"eci:backend": "alicloud"}).problem.startswith("eci:region:")
    assert settings_from_config({"eci:backend": "aws"}).problem.startswith("eci:backend:")
    bad = settings_from_config({"eci:operationTimeout": "soon"})
    assert bad.problem.startswith("eci:operationTimeout:")
    timeout = settings_from_config({"eci:operationTimeout": "60", "eci:dataDir": "/srv/eci"})
    assert timeout.location == local.location  # a timeout is not where a resource lives


def test_client_tokens_identify_a_resource_and_generation() -> None:
    assert client_token("org/p/s//eci:ImageCache/web", 0) == client_token(
        "org/p/s//eci:ImageCache/web", 0
    )
    assert client_token("org/p/s//eci:ImageCache/web", 0) != client_token(
        "org/p/s//eci:ImageCache/web", 1
    )
    assert client_token("org/p/dev//eci:ImageCache/web", 0) != client_token(
        "org/p/prod//eci:ImageCache/web", 0
    )
    assert len(client_token("k", 0)) <= 64  # ECI's ClientToken limit


def test_resources_accept_keyword_arguments_under_mocks() -> None:
    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs):
            return f"{args.name}-id", dict(args.inputs)

        def call(self, args: pulumi.runtime.MockCallArgs):
            return {}

    pulumi.runtime.set_mocks(Mocks(), project="conventions", stack="test", preview=False)
    from eci_imagecache.dynamic import ContainerGroup, ImageCache

    cache = ImageCache("kw", images=["nginx:1.25"], image_cache_size=30)
    group = ContainerGroup("grp", containers=[ContainerArgs(name="web", image="nginx:1.25")])

    def check(values: list) -> None:
        size, name, stack_caches = values
        assert (size, name) == (30, "grp")
        assert stack_caches[-1]["images"] == ["nginx:1.25"]

    return pulumi.Output.all(cache.size_gib, group.name, group.stack_caches).apply(check)


test_resources_accept_keyword_arguments_under_mocks = pulumi.runtime.test(
    test_resources_accept_keyword_arguments_under_mocks
)


def test_outputs_arrive_with_their_declared_types_under_mocks() -> None:
    """The SDK converts each output to the type the resource class declares (a number the
    engine sends as 30.0 to the ``int`` of ``size_gib``); the classes hand it evaluated types,
    not strings it would compile again for every resource."""

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs):
            return f"{args.name}-id", {**args.inputs, "size_gib": 30.0, "layer_count": 4.0}

        def call(self, args: pulumi.runtime.MockCallArgs):
            return {}

    pulumi.runtime.set_mocks(Mocks(), project="conventions", stack="test", preview=False)
    from eci_imagecache.dynamic import ContainerGroup, ImageCache

    for cls in (ImageCache, ContainerGroup):
        assert not any(isinstance(t, str) for t in cls.__annotations__.values()), cls
    cache = ImageCache("typed", images=["nginx:1.25"])

    def check(values: list) -> None:
        size, layers = values
        assert (size, layers) == (30, 4)
        assert type(size) is int and type(layers) is int

    return pulumi.Output.all(cache.size_gib, cache.layer_count).apply(check)


test_outputs_arrive_with_their_declared_types_under_mocks = pulumi.runtime.test(
    test_outputs_arrive_with_their_declared_types_under_mocks
)


def test_the_program_waits_on_registrations_not_on_every_property_under_mocks() -> None:
    """Before it ends, the SDK waits for every output it tracks, with one ``asyncio.wait`` over
    all those pending each time one resolves: tracking each property of each resource made that
    wait grow with the square of their number. A resource's property outputs are left to its
    registration (its ``id`` and ``urn`` stay tracked), and they still resolve."""
    from pulumi.runtime.settings import SETTINGS

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs):
            made = {"status": "Ready", "cache_id": "imc-1"} if "ImageCache" in args.typ else {}
            return f"{args.name}-id", {**args.inputs, **made}

        def call(self, args: pulumi.runtime.MockCallArgs):
            return {}

    pulumi.runtime.set_mocks(Mocks(), project="conventions", stack="test", preview=False)
    from eci_imagecache.dynamic import ContainerGroup, ImageCache

    cache = ImageCache("settled", images=["nginx:1.25"])
    group = ContainerGroup(
        "settled-grp", containers=[ContainerArgs(name="web", image="nginx:1.25")], cache_id=cache.id
    )
    tracked = set(SETTINGS.outputs)
    for resource in (cache, group):
        properties = {
            key: value
            for key, value in vars(resource).items()
            if isinstance(value, pulumi.Output) and key not in ("id", "urn")
        }
        assert len(properties) > 10
        assert not any(output._data in tracked for output in properties.values())
        assert resource.id._data in tracked and resource.urn._data in tracked

    def check(values: list) -> None:
        assert values == ["Ready", "imc-1", "settled-id", "nginx:1.25"]

    return pulumi.Output.all(
        cache.status, cache.cache_id, group.cache_id, group.containers[0]["image"]
    ).apply(check)


test_the_program_waits_on_registrations_not_on_every_property_under_mocks = pulumi.runtime.test(
    test_the_program_waits_on_registrations_not_on_every_property_under_mocks
)


def test_a_program_imports_neither_the_hooks_nor_the_engine_backends_or_registry() -> None:
    """The program only declares resources; the hooks and what they use load in the provider
    process. Checked in a fresh interpreter, as a stack's program starts, with what each
    resource computes when it is declared (its placement and the stack's price overrides)."""
    probe = (
        "import sys; import eci_imagecache.dynamic, eci_imagecache.components; "
        "from eci_imagecache.dynamic import common, pricing; "
        "assert common.program_placement(None, None)['backend'] == 'local'; "
        "assert pricing.price_inputs() is None; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'httpx') "
        "or m.endswith('_provider') or m.startswith(('eci_imagecache.engine', "
        "'eci_imagecache.backends', 'eci_imagecache.registry', 'eci_imagecache.runtime'))))"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert run.stdout.strip() == "[]"


# ``__provider`` as the SDK pickled it into resources made before the hooks moved to their own
# modules (taken from a stack's state): such resources keep loading their provider.
EARLIER_PROVIDERS = {
    "gASVQAAAAAAAAACMImVjaV9pbWFnZWNhY2hlLmR5bmFtaWMuaW1hZ2VfY2FjaGWUjBJJbWFnZUNhY2hlUHJvdmlkZXKU"
    "k5QpgZQu": "ImageCacheProvider",
    "gASVSAAAAAAAAACMJmVjaV9pbWFnZWNhY2hlLmR5bmFtaWMuY29udGFpbmVyX2dyb3VwlIwWQ29udGFpbmVyR3JvdXBQ"
    "cm92aWRlcpSTlCmBlC4=": "ContainerGroupProvider",
    # Release be4f519 (a ProviderRef: ``dynamic.common.load_provider`` and the hooks' module and
    # class), from a stack it made: moving either breaks its refresh and destroy.
    "gASVegAAAAAAAACMHWVjaV9pbWFnZWNhY2hlLmR5bmFtaWMuY29tbW9ulIwNbG9hZF9wcm92aWRlcpSTlIwrZWNp"
    "X2ltYWdlY2FjaGUuZHluYW1pYy5pbWFnZV9jYWNoZV9wcm92aWRlcpSMEkltYWdlQ2FjaGVQcm92aWRlcpSG"
    "lFKULg==": "ImageCacheProvider",
    "gASVggAAAAAAAACMHWVjaV9pbWFnZWNhY2hlLmR5bmFtaWMuY29tbW9ulIwNbG9hZF9wcm92aWRlcpSTlIwvZWNp"
    "X2ltYWdlY2FjaGUuZHluYW1pYy5jb250YWluZXJfZ3JvdXBfcHJvdmlkZXKUjBZDb250YWluZXJHcm91cFByb3ZpZGVy"
    "lIaUUpQu": "ContainerGroupProvider",
}


@pytest.mark.parametrize("pickled", sorted(EARLIER_PROVIDERS))
def test_resources_made_before_the_hooks_moved_still_load_their_provider(pickled: str) -> None:
    provider = dill.loads(base64.b64decode(pickled))  # as the SDK's provider server does
    assert type(provider).__name__ == EARLIER_PROVIDERS[pickled]
    assert type(provider).__module__.endswith("_provider")


def test_the_provider_a_resource_names_unpickles_to_its_hooks() -> None:
    from pulumi.dynamic.dynamic import serialize_provider

    from eci_imagecache.dynamic import container_group, image_cache

    for module, name in (
        (image_cache, "ImageCacheProvider"),
        (container_group, "ContainerGroupProvider"),
    ):
        provider = dill.loads(base64.b64decode(serialize_provider(module.PROVIDER)))
        assert type(provider).__name__ == name
        assert provider.serialize_as_secret_always is False
        assert hasattr(provider, "check") and type(provider).check is not ResourceProvider.check
