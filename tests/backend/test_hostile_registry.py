"""The registry client against a hostile registry: credentials stay with their host, every
digest is checked before use, malformed answers are clear errors naming image and registry,
and nothing takes longer than its deadline."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from eci_imagecache.backends.base import BackendRegistryContentError
from eci_imagecache.engine.models import CacheStatus, ImageCacheSpec
from eci_imagecache.engine.planner import Layer
from eci_imagecache.engine.refs import parse_image_ref
from eci_imagecache.registry.client import (
    AuthenticationError,
    Credentials,
    Limits,
    MalformedManifest,
    RegistryClient,
    RegistryError,
    RegistryUnavailable,
)
from eci_imagecache.retry import RetryPolicy

from ..support.fault_registry import (
    OCI_INDEX,
    OCI_MANIFEST,
    Answer,
    FaultRegistry,
    challenge,
    redirect,
    stalled,
)

USER, PASSWORD = "ci-user", "s3cret-Pa55"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


@pytest.fixture
def a() -> Iterator[FaultRegistry]:
    with FaultRegistry() as registry:
        yield registry


@pytest.fixture
def b() -> Iterator[FaultRegistry]:
    with FaultRegistry() as registry:
        yield registry


def client(registry: FaultRegistry | None = None, **limits: float) -> RegistryClient:
    creds = {registry.host: Credentials(USER, SecretStr(PASSWORD))} if registry else {}
    return RegistryClient(
        credentials=creds,
        retry=RetryPolicy.immediate(attempts=2),
        limits=Limits(**{"connect_timeout": 2.0, "read_timeout": 2.0, **limits}),
    )


def leaked(registry: FaultRegistry) -> list[str]:
    """Requests that reached ``registry`` carrying any credentials."""
    return [f"{r.method} {r.path}" for r in registry.requests if "Authorization" in r.headers]


# credentials --------------------------------------------------------------------------------


def test_credentials_do_not_follow_a_redirect_to_another_host(b) -> None:
    with FaultRegistry(require=BASIC) as a:
        image = a.image("demo/app", "1.0", [b"layer-bytes"])
        layer = image["layers"][0]["digest"]
        a.route("*", f"/v2/demo/app/blobs/{layer}", redirect(f"{b.url}/storage/{layer}"))
        b.route("*", "/storage/.*", challenge(f'Bearer realm="{b.url}/token",service="b"'))
        b.route("*", "/token", lambda r: Answer(200, b'{"token": "t"}'))
        ref = parse_image_ref(a.ref("demo/app:1.0"))
        registry = client(a)
        resolved = registry.resolve(ref)
        with pytest.raises(AuthenticationError, match="not sent to another host") as info:
            registry.fetch_blob(ref, resolved.layers[0], io.BytesIO())
        assert a.host in str(info.value) and b.host in str(info.value)
        assert leaked(b) == [] and b.seen("/token") == []
        assert leaked(a)  # A itself did get them


def test_a_blob_redirected_to_open_storage_arrives_without_credentials(a, b) -> None:
    data = b"layer on a storage host"
    a.image("demo/app", "1.0", [data])
    digest = a.blob("demo/app", data)
    b.blob("storage", data)
    a.route("GET", f"/v2/demo/app/blobs/{digest}", redirect(f"{b.url}/v2/storage/blobs/{digest}"))
    registry = client(a)
    ref = parse_image_ref(a.ref("demo/app:1.0"))
    out = io.BytesIO()
    registry.fetch_blob(ref, Layer(digest=digest, size=len(data)), out)
    assert out.getvalue() == data and leaked(b) == []


def test_a_token_realm_on_another_host_gets_credentials_only_from_the_registry_itself(a, b):
    a.image("demo/app", "1.0", [b"x"])
    a.route("*", "/v2/demo/app/manifests/1.0", lambda r: _bearer(r, a, b))
    b.route("GET", "/token", lambda r: Answer(200, b'{"token": "good"}'))
    client(a).resolve(parse_image_ref(a.ref("demo/app:1.0")))
    [token_request] = b.seen("/token")
    assert token_request.headers["Authorization"] == BASIC  # the realm A named: allowed
    assert all(r.path == token_request.path for r in b.requests)


def _bearer(seen, a: FaultRegistry, b: FaultRegistry) -> Answer:
    if seen.headers.get("Authorization") != "Bearer good":
        return Answer(401, b"{}", {"WWW-Authenticate": f'Bearer realm="{b.url}/token"'})
    manifest = a.image("demo/app", "1.0", [b"x"])
    return Answer(200, json.dumps(manifest).encode(), {"Content-Type": OCI_MANIFEST})


# digests and malformed manifests --------------------------------------------------------------


def index_with(entry: dict) -> dict:
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}


AMD64 = {"os": "linux", "architecture": "amd64"}
GOOD = {"digest": "sha256:" + "a" * 64, "size": 2}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"[]", "not a JSON object"),
        (b"null", "not a JSON object"),
        (b"not json", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        ({"mediaType": 5, "layers": []}, "mediaType is not a string"),
        (index_with({"platform": AMD64, "size": 1}), "manifests.0.digest: Field required"),
        (index_with({"digest": "../../../../x", "size": 1, "platform": AMD64}), "digest"),
        (index_with({"digest": "sha256:" + "A" * 64, "size": 1, "platform": AMD64}), "digest"),
        ({"config": GOOD, "layers": [{"digest": GOOD["digest"], "size": "big"}]}, "size"),
        ({"config": GOOD, "layers": [{"digest": "sha256:../x", "size": 1}]}, "digest"),
        ({"config": {"size": 1}, "layers": []}, "config.digest"),
        ({"config": GOOD, "layers": {"a": 1}}, "layers"),
        ({"mediaType": "text/html", "foo": 1}, "unsupported manifest type"),
    ],
    ids=[
        "list",
        "null",
        "not-json",
        "deep",
        "media-type-5",
        "entry-without-digest",
        "digest-traversal",
        "digest-uppercase",
        "size-big",
        "layer-digest-traversal",
        "config-without-digest",
        "layers-object",
        "unknown-type",
    ],
)
def test_a_malformed_manifest_is_a_clear_error_naming_image_and_registry(a, body, problem) -> None:
    a.manifest("demo/bad", "1.0", body, OCI_MANIFEST if not isinstance(body, dict) else None)
    ref = a.ref("demo/bad:1.0")
    with pytest.raises(MalformedManifest) as info:
        client().resolve(parse_image_ref(ref))
    message = str(info.value)
    assert message.startswith(f"image {ref}: malformed manifest from {a.host}: ")
    assert problem in message and "\n" not in message
    # Nothing was fetched from a path a digest made up.
    assert [r.path for r in a.requests if "/manifests/1.0" not in r.path] == []


def test_an_index_inside_an_index_is_refused(a) -> None:
    inner = a.manifest("demo/idx", "inner", index_with({**GOOD, "platform": AMD64}), OCI_INDEX)
    a.manifest("demo/idx", "1.0", index_with({"digest": inner, "size": 1, "platform": AMD64}))
    with pytest.raises(MalformedManifest, match="an index inside an index"):
        client().resolve(parse_image_ref(a.ref("demo/idx:1.0")))


def test_a_malformed_manifest_fails_the_create_and_leaves_nothing(backend, a) -> None:
    a.manifest("demo/bad", "1.0", {"config": GOOD, "layers": [{"digest": "x", "size": "big"}]})
    with pytest.raises(
        BackendRegistryContentError, match=f"image cache web: image {a.host}/demo/bad"
    ):
        backend.create_image_cache(ImageCacheSpec(name="web", images=[a.ref("demo/bad:1.0")]))
    assert backend.list_image_caches() == []


def test_a_fetched_blob_digest_is_checked_before_it_becomes_a_path(a) -> None:
    with pytest.raises(RegistryError, match="not a sha256 digest"):
        client().fetch_blob(
            parse_image_ref(a.ref("demo/app:1.0")),
            Layer(digest="sha256:../../x", size=1),
            io.BytesIO(),
        )
    assert a.requests == []


# size caps, redirect loops and deadlines -----------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
def test_a_manifest_over_the_cap_is_refused_without_reading_it_whole(a, chunked) -> None:
    big = b'{"layers": [' + b'{"x": 1},' * 200_000 + b"{}]}"
    a.route("*", "/v2/demo/big/manifests/1.0", lambda r: Answer(200, big, chunked=chunked))
    with pytest.raises(MalformedManifest, match="larger than 65536 bytes"):
        client(max_manifest_bytes=65536).resolve(parse_image_ref(a.ref("demo/big:1.0")))


def test_a_manifest_redirect_loop_is_a_clear_error(a) -> None:
    a.route("*", "/v2/demo/loop/manifests/1.0", redirect("/v2/demo/loop/manifests/1.0"))
    ref = a.ref("demo/loop:1.0")
    with pytest.raises(RegistryError, match=f"image {ref}: {a.host} redirected more than 5"):
        client().resolve(parse_image_ref(ref))


def test_a_blob_redirect_loop_names_image_and_registry(a) -> None:
    data = b"blob"
    a.image("demo/app", "1.0", [data])
    digest = a.blob("demo/app", data)
    a.route("*", f"/v2/demo/app/blobs/{digest}", redirect(f"/v2/demo/app/blobs/{digest}"))
    ref = a.ref("demo/app:1.0")
    with pytest.raises(RegistryError, match=f"image {ref}: blob .*{a.host} redirected more"):
        client().fetch_blob(parse_image_ref(ref), Layer(digest=digest, size=4), io.BytesIO())


def test_a_trickling_blob_misses_its_deadline(a) -> None:
    data = b"x" * 64 * 1024
    digest = a.blob("demo/app", data, trickle=(1024, 0.1))  # 10 KiB/s: never silent long
    registry = client(grace=0.5, min_rate=64 * 1024, read_timeout=5.0)
    with pytest.raises(RegistryUnavailable, match="too slow") as info:
        registry.fetch_blob(
            parse_image_ref(a.ref("demo/app:1.0")),
            Layer(digest=digest, size=len(data)),
            io.BytesIO(),
        )
    assert f"image {a.host}/demo/app:1.0" in str(info.value)


def test_a_silent_registry_fails_within_the_deadline_not_after_every_retry(a) -> None:
    silence = 30.0
    a.route("*", "/v2/demo/app/manifests/1.0", stalled(silence))
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable, match=f"{a.host} did not answer"):
        client(read_timeout=0.3, grace=1.0).resolve(parse_image_ref(a.ref("demo/app:1.0")))
    assert time.monotonic() - started < silence  # the client gave up, the server did not


def test_throttling_is_retried_after_the_delay_the_registry_asks(a) -> None:
    manifest = a.image("demo/app", "1.0", [b"blob"])
    answers = iter([Answer(429, headers={"Retry-After": "0"})])
    route = a.routes[-1][2]
    a.route("GET", "/v2/demo/app/manifests/1.0", lambda r: next(answers, None) or route(r))
    resolved = client().resolve(parse_image_ref(a.ref("demo/app:1.0")))
    assert resolved.layers[0].size == manifest["layers"][0]["size"]
    assert len(a.seen("GET /v2/demo/app/manifests/1.0")) == 2


def test_the_good_image_of_the_fault_registry_builds(backend, a) -> None:
    a.image("demo/app", "1.0", [b"one", b"two"])
    made = backend.create_image_cache(ImageCacheSpec(name="web", images=[a.ref("demo/app:1.0")]))
    assert made.status == CacheStatus.READY and made.layer_count == 3


def test_a_group_whose_second_image_is_malformed_leaves_no_directory(backend, a) -> None:
    from eci_imagecache.engine.models import ContainerGroupSpec

    a.image("demo/app", "1.0", [b"good layer"])
    a.manifest("demo/bad", "1.0", {"config": GOOD, "layers": [{"digest": "../x", "size": 1}]})
    spec = ContainerGroupSpec(
        name="group",
        cache="none",
        containers=[
            {"name": "good", "image": a.ref("demo/app:1.0")},
            {"name": "bad", "image": a.ref("demo/bad:1.0")},
        ],
    )
    with pytest.raises(BackendRegistryContentError, match="container group group: image"):
        backend.create_container_group(spec)
    assert backend.list_container_groups() == []
    assert not backend.groups_dir.exists() or list(backend.groups_dir.iterdir()) == []
