"""Bad input is refused by the engine's specs, naming the property, for every class of input
ECI or the OCI distribution spec refuses; and whatever JSON arrives, a spec is either made or
refused so, never with another exception.

The rules' sources: the ECI API reference as the official SDK's request models give it
(``alibabacloud_eci20180808.models``), the vendor's image cache document, and the OCI
distribution spec's grammar for references."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from eci_imagecache.engine.cost import PriceError, prices_from
from eci_imagecache.engine.models import (
    CacheAdoption,
    ContainerGroupSpec,
    ContainerSpec,
    ImageCacheSpec,
    RegistryCredential,
    failure_text,
    invalid_properties,
    validation_failures,
)
from eci_imagecache.engine.planner import Layer, PlanError, ResolvedImage, plan_build
from eci_imagecache.engine.refs import ImageRef, ImageRefError, parse_image_ref

REGISTRY = "registry.example.com"
IMAGE = f"{REGISTRY}/team/web:1.0"
SHA256 = "sha256:" + "ab" * 32
SHA512 = "sha512:" + "cd" * 64


def refused(model: type[BaseModel], **values: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        model(**values)
    failures = validation_failures(info.value)
    assert failures
    return failures


def cache(**values: Any) -> list[tuple[str, str]]:
    return refused(ImageCacheSpec, **{"name": "web", "images": [IMAGE], **values})


def group(*containers: dict[str, Any], **values: Any) -> list[tuple[str, str]]:
    return refused(
        ContainerGroupSpec,
        **{"name": "api", "containers": list(containers) or [{"name": "web", "image": IMAGE}]},
        **values,
    )


def only(failures: list[tuple[str, str]]) -> tuple[str, str]:
    assert len(failures) == 1, failures
    return failures[0]


# Image references (OCI distribution spec) -----------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "problem"),
    [
        (f"nginx@md5:{'a' * 32}", "digest algorithm 'md5' is not sha256 or sha512"),
        (f"nginx@sha384:{'a' * 96}", "digest algorithm 'sha384' is not sha256 or sha512"),
        (f"nginx@SHA256:{'a' * 64}", "digest algorithm 'SHA256'"),
        (f"nginx@sha256:{'a' * 63}", "sha256 digest must have 64 hex digits, not 63"),
        (f"nginx@sha512:{'a' * 64}", "sha512 digest must have 128 hex digits, not 64"),
        ("nginx:vé", "tag 'vé' is not valid"),
        ("nginx:١٢٣", "tag '١٢٣' is not valid"),  # Arabic-Indic digits: \w, not the grammar
        ("nginx:.hidden", "tag '.hidden'"),
        ("nginx:" + "a" * 129, "tag"),
        ("registry.example.com:70000/app", "registry port 70000 is not a port"),
        ("registry.example.com:0/app", "registry port 0 is not a port"),
    ],
)
def test_references_the_distribution_spec_refuses_are_refused(reference: str, problem: str) -> None:
    with pytest.raises(ImageRefError) as info:
        parse_image_ref(reference)
    assert problem in str(info.value)
    prop, reason = only(cache(images=[reference]))
    assert prop == "images" and problem in reason


@pytest.mark.parametrize(
    "reference",
    [
        f"nginx@{SHA256}",
        f"nginx:1.25@{SHA512}",
        "registry.example.com:65535/app:v1",
        "nginx:V1_2.3-rc",
        "[::1]:5000/app:1",
    ],
)
def test_references_the_spec_allows_still_parse(reference: str) -> None:
    ref = parse_image_ref(reference)
    assert parse_image_ref(str(ref)) == ref


@pytest.mark.parametrize(
    ("fields", "field", "problem"),
    [
        ({"tag": "vé"}, "tag", "should match pattern"),
        ({"tag": None, "digest": f"md5:{'a' * 32}"}, "digest", "should match pattern"),
        ({"digest": f"sha384:{'a' * 96}"}, "digest", "should match pattern"),
        ({"digest": "sha256:" + "AB" * 32}, "digest", "should match pattern"),
        ({"registry": "registry.example.com:99999"}, "registry", "should match pattern"),
        ({"registry": "Registry.example.com"}, "registry", "should match pattern"),
        ({"registry": ""}, "registry", "should match pattern"),
        ({"repository": "Team/App"}, "repository", "should match pattern"),
        ({"repository": "../etc"}, "repository", "should match pattern"),
        ({"repository": "a" * 260}, "(resource)", "longer than 255"),
        ({"tag": None}, "(resource)", "needs a tag or a digest"),
    ],
)
def test_an_image_ref_built_directly_is_held_to_the_same_rules(
    fields: dict[str, Any], field: str, problem: str
) -> None:
    """The normalized parts, as the parser makes them; pydantic names the part."""
    values = {"registry": REGISTRY, "repository": "team/web", "tag": "1.0", **fields}
    prop, reason = only(refused(ImageRef, **values))
    assert prop == field and problem in reason


def test_a_bad_image_in_a_container_names_the_container() -> None:
    prop, reason = only(group({"name": "web", "image": "nginx:vé"}))
    assert prop == "containers"
    assert reason.startswith("containers[0].image: invalid image reference 'nginx:vé'")


# Names ECI keeps (the vendor's document: auto-create-for-<instance id>) ------------------------


def test_a_manual_cache_cannot_take_the_name_of_an_automatic_one() -> None:
    prop, reason = only(cache(name="auto-create-for-eci-2ze5hdcnngenmwc1jmwf"))
    assert prop == "name" and "auto-create-for-" in reason
    assert ImageCacheSpec(name="auto-created-web", images=[IMAGE]).name == "auto-created-web"


# Tags (CreateContainerGroupRequestTag, CreateImageCacheRequestTag) ------------------------------


@pytest.mark.parametrize(
    ("tags", "problem"),
    [
        ({f"k{i}": "v" for i in range(21)}, "at most 20 tags, got 21"),
        ({"": "v"}, "a tag key cannot be empty"),
        ({"k" * 65: "v"}, "longer than 64 characters"),
        ({"team": "v" * 129}, "longer than 128 characters"),
        ({"aliyun-team": "v"}, "starts with a prefix the cloud keeps"),
        ({"acs:team": "v"}, "starts with a prefix the cloud keeps"),
        ({"team": "acs:web"}, "starts with acs:"),
        ({"docs": "https://example.com"}, "contains http:// or https://"),
    ],
)
def test_tags_outside_ecis_rules_are_refused(tags: dict[str, str], problem: str) -> None:
    for failures in (cache(tags=tags), group(tags=tags)):
        prop, reason = only(failures)
        assert prop == "tags" and problem in reason


def test_tags_at_the_limits_are_taken() -> None:
    tags = {f"k{i:02d}" + "k" * 60: "v" * 128 for i in range(20)}
    assert ImageCacheSpec(name="web", images=[IMAGE], tags=tags).tags == tags
    assert ImageCacheSpec(name="web", images=[IMAGE], tags={"team": ""}).tags == {"team": ""}


# Ids in the vendor's shapes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("vswitch_id", "../etc", "a vSwitch"),
        ("vswitch_id", "vsw-1,../etc", "a vSwitch"),
        ("vswitch_id", "VSW-1", "a vSwitch"),
        ("security_group_id", "../etc", "a security group"),
        ("security_group_id", "sg_1", "a security group"),
        ("eip_instance_id", "eip-", "an EIP"),
        ("resource_group_id", "rg-a/b", "a resource group"),
    ],
)
def test_ids_not_of_the_vendors_shape_are_refused(field: str, value: str, kind: str) -> None:
    for failures in (cache(**{field: value}), group(**{field: value})):
        prop, reason = only(failures)
        assert prop == field and f"is not the id of {kind}" in reason


def test_a_cache_id_must_look_like_one() -> None:
    prop, reason = only(group(cache="explicit", cache_id="../etc"))
    assert (prop, reason) == ("cache_id", "'../etc' is not the id of an image cache (imc-...)")
    prop, reason = only(refused(CacheAdoption, adopt_id="/tmp/x"))
    assert prop == "adopt_id" and "image cache" in reason


def test_up_to_ten_vswitches_comma_separated() -> None:
    ten = ",".join(f"vsw-{i}" for i in range(10))
    assert ImageCacheSpec(name="web", images=[IMAGE], vswitch_id=ten).vswitch_id == ten
    prop, reason = only(cache(vswitch_id=ten + ",vsw-10"))
    assert prop == "vswitch_id" and "at most 10" in reason


# Numbers, ports, names, environment ----------------------------------------------------------


@pytest.mark.parametrize("field", ["size_gib", "retention_days", "instant_copies"])
def test_a_boolean_is_not_a_size(field: str) -> None:
    prop, reason = only(cache(**{field: True}))
    assert (prop, reason) == (field, "expected a number, got true")


@pytest.mark.parametrize("field", ["extra_ephemeral_storage_gib", "cpu", "memory_gib"])
def test_a_boolean_is_not_a_group_quantity(field: str) -> None:
    prop, reason = only(group(**{field: False}))
    assert (prop, reason) == (field, "expected a number, got false")


def test_numbers_pulumi_sends_as_floats_are_taken() -> None:
    spec = ImageCacheSpec(name="web", images=[IMAGE], size_gib=30.0, retention_days=7.0)
    assert (spec.size_gib, spec.retention_days) == (30, 7)


@pytest.mark.parametrize(("port", "problem"), [(70000, "65535"), (0, "1"), (-1, "1")])
def test_container_ports_outside_1_to_65535_are_refused(port: int, problem: str) -> None:
    prop, reason = only(group({"name": "web", "image": IMAGE, "ports": [80, port]}))
    assert prop == "containers"
    assert reason.startswith("containers[0].ports[1]: ") and problem in reason


def test_a_boolean_is_not_a_port() -> None:
    _, reason = only(group({"name": "web", "image": IMAGE, "ports": [True]}))
    assert reason == "containers[0].ports[0]: expected a number, got true"


def test_two_containers_of_one_name_are_refused() -> None:
    web = {"name": "web", "image": IMAGE}
    prop, reason = only(group(web, {"name": "side", "image": IMAGE}, web))
    assert prop == "containers"
    assert reason.startswith("containers[2].name: 'web' is already the name of containers[0]")
    prop, reason = only(group(web, init_containers=[web]))
    assert reason.startswith("containers[0].name: 'web' is already the name of init_containers")


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"": "x"}, "an environment variable name cannot be empty"),
        ({"1ST": "x"}, "is not 1 to 128 letters, digits and underscores"),
        ({"MY-VAR": "x"}, "is not 1 to 128 letters"),
        ({"A" * 129: "x"}, "is not 1 to 128 letters"),
        ({"CONFIG": "x" * 257}, "longer than 256 characters"),
    ],
)
def test_environment_variables_outside_the_apis_rules_are_refused(
    env: dict[str, str], problem: str
) -> None:
    prop, reason = only(group({"name": "web", "image": IMAGE, "env": env}))
    assert prop == "containers"
    assert reason.startswith("containers[0].env: ") and problem in reason


def test_credentials_for_a_registry_no_image_uses() -> None:
    unused = {"server": "other.example.com", "username": "u", "password": "p"}
    prop, reason = only(cache(credentials=[unused]))
    assert prop == "credentials" and "'other.example.com' is not used by any image" in reason
    # A group is only warned (see the provider): a component hands one set to all its groups.
    spec = ContainerGroupSpec(
        name="api", containers=[{"name": "web", "image": IMAGE}], credentials=[unused]
    )
    assert spec.unused_credentials == ["other.example.com"]


def test_docker_hub_credentials_under_any_of_its_names_are_used() -> None:
    for server in ("https://index.docker.io/v1/", "registry-1.docker.io", "docker.io"):
        credential = RegistryCredential(server=server, username="u", password="p")
        assert credential.server == "docker.io"
        ImageCacheSpec(name="web", images=["nginx"], credentials=[credential])


# Shapes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("containers", "reason"),
    [
        (["nginx"], "item 0 is 'nginx', not a container"),
        ([None], "item 0 is null, not a container"),
        ([7], "item 0 is a number, not a container"),
        ([{"name": "web", "image": IMAGE}, ["nginx"]], "item 1 is a list, not a container"),
        ("nginx", "Input should be a valid list"),
        ({"name": "web", "image": IMAGE}, "Input should be a valid list"),
        (None, "Field required"),
    ],
)
def test_something_else_where_a_container_belongs_is_refused(containers: Any, reason: str) -> None:
    values = {"name": "api"} if containers is None else {"name": "api", "containers": containers}
    prop, message = only(refused(ContainerGroupSpec, **values))
    assert prop == "containers" and reason in message


@pytest.mark.parametrize(
    ("field", "value"),
    [("images", "nginx"), ("images", {"nginx": 1}), ("tags", ["a"]), ("credentials", "u:p")],
)
def test_something_else_where_a_list_or_map_belongs_is_refused(field: str, value: Any) -> None:
    prop, _ = only(cache(**{field: value}))
    assert prop == field


def test_an_unset_container_field_takes_its_default() -> None:
    container = ContainerSpec(name="web", image=IMAGE, ports=None, cpu=None)
    assert (container.ports, container.cpu) == ([], None)


def test_failures_read_as_property_then_reason_on_one_line() -> None:
    with pytest.raises(ValidationError) as info:
        ContainerGroupSpec(
            name="api", containers=[{"name": "web", "image": IMAGE, "ports": [70000]}], cpu=True
        )
    text = failure_text(validation_failures(info.value))
    assert text == (
        "containers[0].ports[0]: Input should be less than or equal to 65535; "
        "cpu: expected a number, got true"
    )


def test_a_failure_carries_its_property_and_place_as_fields() -> None:
    """The property and the place within it travel as fields, not inside the message text."""
    with pytest.raises(ValidationError) as info:
        ContainerGroupSpec(
            name="api",
            containers=[{"name": "web", "image": IMAGE}, {"name": "web", "image": IMAGE}],
        )
    [twins] = invalid_properties(info.value)
    assert (twins.property, twins.place, twins.path) == (
        "containers",
        "containers[1].name",
        "containers[1].name",
    )
    assert twins.message == (
        "'web' is already the name of containers[0]; the containers of a group need their own names"
    )
    assert twins.reason == f"containers[1].name: {twins.message}"
    with pytest.raises(ValidationError) as info:
        ContainerGroupSpec(
            name="api", containers=[{"name": "web", "image": IMAGE}], cache_id="imc-abc1"
        )
    [stray] = invalid_properties(info.value)
    assert (stray.property, stray.place) == ("cache_id", None)
    assert stray.reason == "only allowed when the cache selection is explicit"


def test_the_engines_refusals_name_their_property() -> None:
    layer = Layer(digest=SHA256, size=2 * 1024**3)
    image = ResolvedImage(reference=IMAGE, manifest_digest=SHA256, config=layer, layers=[])
    with pytest.raises(PlanError) as plan:
        plan_build([image], 1)
    assert (plan.value.property, plan.value.place) == ("size_gib", None)
    assert str(plan.value).startswith("size_gib: the images need 2.0 GiB")
    with pytest.raises(PriceError) as prices:
        prices_from({"snapshotGibMonth": -1})
    assert prices.value.property == "prices"
    assert prices.value.message.startswith("snapshotGibMonth: ")


# Any JSON (Hypothesis) --------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
image_texts = st.one_of(
    st.sampled_from(
        [IMAGE, "nginx", f"nginx@{SHA256}", "a.io:70000/x", "nginx:vé", f"x@md5:{'a' * 32}"]
    ),
    st.from_regex(
        r"([a-z0-9.:]{1,12}/)?[a-z0-9/._-]{1,12}(:[\w.-]{1,6})?(@[a-z0-9]{1,6}:[0-9a-f]{0,70})?",
        fullmatch=True,
    ),
)
ids = st.from_regex(r"(vsw|sg|eip|rg|imc)-[0-9a-z./]{0,6}(,vsw-[0-9a-z]{1,3}){0,2}", fullmatch=True)
plain_dicts = st.dictionaries(st.text(max_size=70), st.text(max_size=130), max_size=22)
numbers = st.one_of(st.booleans(), st.integers(-3, 70000), st.floats(-1, 3000, allow_nan=False))


def near(*strategies: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Values close to valid ones, or anything at all."""
    return st.one_of(*strategies, json_values)


container_values = st.fixed_dictionaries(
    {},
    optional={
        "name": near(st.sampled_from(["web", "side", "Web", ""])),
        "image": near(image_texts),
        "ports": near(st.lists(numbers, max_size=3)),
        "env": near(plain_dicts),
        "cpu": near(numbers),
        "command": near(st.lists(st.text(max_size=5), max_size=2)),
        "image_pull_policy": near(st.sampled_from(["Always", "IfNotPresent", "Sometimes"])),
        "working_dir": near(st.sampled_from(["/app", "app"])),
    },
)
credential_values = st.fixed_dictionaries(
    {},
    optional={
        "server": near(st.sampled_from([REGISTRY, "docker.io", "other.io"])),
        "username": near(st.just("u")),
        "password": near(st.just("p")),
    },
)
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "name": near(st.from_regex(r"[a-z0-9][a-z0-9.-]{0,10}[a-z0-9]", fullmatch=True)),
    "images": near(st.lists(image_texts, max_size=4)),
    "image": near(image_texts),
    "containers": near(st.lists(container_values, max_size=3)),
    "init_containers": near(st.lists(container_values, max_size=2)),
    "credentials": near(st.lists(credential_values, max_size=2)),
    "tags": near(plain_dicts),
    "env": near(plain_dicts),
    "ports": near(st.lists(numbers, max_size=3)),
    "vswitch_id": near(ids),
    "security_group_id": near(ids),
    "eip_instance_id": near(ids),
    "resource_group_id": near(ids),
    "cache_id": near(ids),
    "adopt_id": near(ids),
    "cache": near(st.sampled_from(["none", "auto", "auto-create", "explicit", "other"])),
    "eviction": near(st.sampled_from(["", "LRU", "lru", "FIFO"])),
}


def inputs_of(model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    """Some of the model's fields with values near valid ones or arbitrary JSON, and now and
    then a key it does not know."""
    fields = {
        name: FIELD_VALUES.get(name, near(numbers, st.text(max_size=8)))
        for name in model.model_fields
    }
    return st.fixed_dictionaries({}, optional=fields).flatmap(
        lambda known: st.dictionaries(st.text(min_size=1, max_size=6), json_values, max_size=1).map(
            lambda unknown: {**unknown, **known}
        )
    )


def made_or_refused_naming_a_property(model: type[BaseModel], values: dict[str, Any]) -> None:
    try:
        model.model_validate(values)
        event("made")  # --hypothesis-show-statistics
    except ValidationError as err:
        failures = validation_failures(err)
        event("refused")
        assert failures
        for prop, reason in failures:
            assert prop in model.model_fields or prop in values, (prop, reason)
            assert reason and "\n" not in reason


@pytest.mark.parametrize(
    "model", [ImageCacheSpec, ContainerGroupSpec, ContainerSpec, RegistryCredential, CacheAdoption]
)
@given(data=st.data())
def test_any_json_makes_a_spec_or_is_refused_naming_a_property(
    model: type[BaseModel], data: st.DataObject
) -> None:
    made_or_refused_naming_a_property(model, data.draw(inputs_of(model)))


@given(
    st.fixed_dictionaries(
        {
            "registry": near(st.sampled_from([REGISTRY, "localhost:5000", "a.io:99999", "A.io"])),
            "repository": near(st.sampled_from(["team/web", "library/nginx", "Team", "../x"])),
        },
        optional={
            "tag": near(st.sampled_from(["1.0", "vé", ".x", "latest"])),
            "digest": near(st.sampled_from([SHA256, SHA512, "md5:" + "a" * 32])),
        },
    )
)
def test_any_json_makes_an_image_ref_or_is_refused(values: dict[str, Any]) -> None:
    try:
        ref = ImageRef.model_validate(values)
    except ValidationError as err:
        assert all(reason and "\n" not in reason for _, reason in validation_failures(err))
    else:
        assert parse_image_ref(str(ref)) == ref  # what is made is what the parser makes


# The program passes inputs on; only check judges them ------------------------------------------


def test_the_program_passes_malformed_inputs_on_for_check_under_mocks() -> None:
    """``ContainerGroup("bad", containers=["nginx"])`` ended the program with an
    AttributeError; the inputs now reach the provider as given, where check names them."""
    from eci_imagecache.components.cached_groups import CachedContainerGroups
    from eci_imagecache.dynamic import ContainerGroup

    registered: dict[str, dict[str, Any]] = {}

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs):
            registered[args.name] = dict(args.inputs)
            return f"{args.name}-id", dict(args.inputs)

        def call(self, args: pulumi.runtime.MockCallArgs):
            return {}

    pulumi.runtime.set_mocks(Mocks(), project="validation", stack="test", preview=True)
    bare = ContainerGroup("bare", containers=["nginx"])
    text = ContainerGroup("text", containers="nginx", credentials="user:password")
    component = CachedContainerGroups(
        "mixed", groups={"api": [{"name": "web", "image": IMAGE}, "nginx"]}
    )

    def check(_: list) -> None:
        assert registered["bare"]["containers"] == ["nginx"]
        assert registered["text"]["containers"] == "nginx"
        assert registered["mixed-api"]["containers"][1] == "nginx"
        assert registered["mixed"]["images"] == [IMAGE]

    group = component.groups["api"]
    return pulumi.Output.all(bare.urn, text.urn, component.cache.urn, group.urn).apply(check)


test_the_program_passes_malformed_inputs_on_for_check_under_mocks = pulumi.runtime.test(
    test_the_program_passes_malformed_inputs_on_for_check_under_mocks
)
