"""Bearer-token flows of the registry client, against an in-process fake registry (the real
registry on loopback does Basic auth; these cover the token service paths)."""

import httpx
import pytest
from pydantic import SecretStr

from eci_imagecache.engine.refs import parse_image_ref
from eci_imagecache.registry import client as client_module
from eci_imagecache.registry.client import AuthenticationError, Credentials, RegistryClient
from eci_imagecache.retry import RetryPolicy

MANIFEST = (
    b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
    b'"config":{"digest":"sha256:' + b"a" * 64 + b'","size":2},"layers":[]}'
)


class FakeRegistry:
    def __init__(self, realm: str) -> None:
        self.realm = realm
        self.valid = {"token-1"}
        self.issued = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            assert request.headers["Authorization"].startswith("Basic ")
            self.issued += 1
            token = f"token-{self.issued}"
            self.valid.add(token)
            return httpx.Response(200, json={"token": token})
        if request.headers.get("Authorization", "").removeprefix("Bearer ") not in self.valid:
            challenge = f'Bearer realm="{self.realm}",service="reg",scope="repository:app:pull"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        return httpx.Response(
            200,
            content=MANIFEST,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )


@pytest.fixture
def fake(monkeypatch):
    def install(realm: str) -> FakeRegistry:
        registry = FakeRegistry(realm)
        http = httpx.Client(transport=httpx.MockTransport(registry))
        monkeypatch.setattr(client_module, "_shared_client", lambda verify, max_redirects: http)
        return registry

    return install


def client() -> RegistryClient:
    creds = {"registry.example.com": Credentials("user", SecretStr("pw"))}
    return RegistryClient(credentials=creds, retry=RetryPolicy.immediate())


def test_bearer_token_is_fetched_and_renewed_when_it_expires(fake) -> None:
    registry = fake("https://auth.example.com/token")
    registry.valid.clear()
    c = client()
    ref = parse_image_ref("registry.example.com/app:v1")
    assert c.resolve(ref).config.size == 2
    assert registry.issued == 1
    registry.valid.clear()  # the token expires during a long build
    assert c.resolve(ref).config.size == 2
    assert registry.issued == 2


def test_credentials_are_not_sent_to_a_plain_http_token_service(fake) -> None:
    fake("http://auth.example.com/token")
    with pytest.raises(AuthenticationError, match="plain-HTTP token service"):
        client().resolve(parse_image_ref("registry.example.com/app:v1"))
