"""A small OCI Distribution client on httpx.

- Manifests: OCI image index and Docker manifest list (a platform is chosen, linux/amd64 by
  default), OCI and Docker v2 image manifests. Manifests fetched by digest are verified.
- Blobs are streamed and their sha256 checked as they arrive; a mismatch raises before the caller
  keeps anything.
- Auth: anonymous, Basic, and Bearer tokens from the realm a 401 challenge names (with Basic
  credentials when given). Credentials are used for the call and never logged or kept elsewhere.
- Transport: HTTPS by default; plain HTTP for loopback hosts and hosts listed as plain-HTTP;
  unverified TLS for hosts listed as insecure. 429, 5xx, timeouts and dropped connections are
  retried with exponential backoff (``Retry-After`` is honoured).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

import httpx
from pydantic import SecretStr

from ..engine.planner import Layer, ResolvedImage
from ..engine.refs import ImageRef

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = {OCI_INDEX, DOCKER_LIST}
IMAGE_TYPES = {OCI_MANIFEST, DOCKER_MANIFEST}
ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])
DOCKER_HUB_API = "registry-1.docker.io"


class RegistryError(RuntimeError):
    """A registry call failed; the message names the image and never holds a secret."""


class AuthenticationError(RegistryError):
    pass


class ImageNotFound(RegistryError):
    pass


class RegistryUnavailable(RegistryError):
    """5xx, throttling or timeouts persisted through every retry."""


class DigestMismatch(RegistryError):
    pass


class _Retryable(Exception):
    """A blob download answer worth another try (throttling, 5xx)."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: SecretStr

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=**********)"


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:].split("]")[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


_pool: dict[tuple[bool, float], httpx.Client] = {}
_pool_lock = threading.Lock()


def _shared_client(verify: bool, timeout: float) -> httpx.Client:
    """One pooled HTTP client per TLS mode and timeout, shared by every RegistryClient of the
    process: building a TLS context costs ~25 ms, and pooled connections skip new handshakes.
    Authentication is per request (our headers), so sharing carries no credentials across."""
    key = (verify, timeout)
    with _pool_lock:
        client = _pool.get(key)
        if client is None:
            client = httpx.Client(
                verify=verify,
                timeout=timeout,
                follow_redirects=True,
                headers={"User-Agent": "eci-imagecache"},
                limits=httpx.Limits(max_connections=32),
            )
            _pool[key] = client
        return client


@dataclass
class RegistryClient:
    credentials: dict[str, Credentials] = field(default_factory=dict)
    plain_http: set[str] = field(default_factory=set)
    insecure: set[str] = field(default_factory=set)
    platform: str = "linux/amd64"
    timeout: float = 30.0
    retries: int = 4
    backoff: float = 0.25
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        self._tokens: dict[tuple[str, str], str] = {}

    # plumbing ----------------------------------------------------------------------------

    def _base_url(self, registry: str) -> str:
        host = DOCKER_HUB_API if registry == "docker.io" else registry
        scheme = "http" if registry in self.plain_http or _is_loopback(registry) else "https"
        return f"{scheme}://{host}"

    def _client(self, registry: str) -> httpx.Client:
        return _shared_client(verify=registry not in self.insecure, timeout=self.timeout)

    def close(self) -> None:
        """Forget tokens; the pooled connections stay for the next client."""
        self._tokens.clear()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _auth_header(self, registry: str, scope: str) -> dict[str, str]:
        token = self._tokens.get((registry, scope))
        if token is not None:
            return {"Authorization": token}
        return {}

    def _authenticate(self, registry: str, scope: str, challenge: str, what: str) -> None:
        scheme, params = _challenge(challenge)
        creds = self.credentials.get(registry)
        basic = (creds.username, creds.password.get_secret_value()) if creds else None
        if scheme == "basic":
            if basic is None:
                raise AuthenticationError(f"{what}: registry {registry} needs credentials")
            pair = f"{basic[0]}:{basic[1]}".encode()
            self._tokens[(registry, scope)] = "Basic " + base64.b64encode(pair).decode()
            return
        if scheme != "bearer" or "realm" not in params:
            raise AuthenticationError(f"{what}: unsupported authentication from {registry}")
        realm = httpx.URL(params["realm"])
        if (
            basic
            and realm.scheme != "https"
            and not (
                _is_loopback(realm.netloc.decode()) or realm.netloc.decode() in self.plain_http
            )
        ):
            raise AuthenticationError(
                f"{what}: {registry} asks for credentials at a plain-HTTP token service "
                f"({realm.host}); list it in plain_http_registries to allow that"
            )
        query = {"service": params.get("service", ""), "scope": params.get("scope", scope)}
        response = self._send(
            "GET",
            params["realm"],
            registry,
            what,
            params=query,
            auth=httpx.BasicAuth(*basic) if basic else None,
        )
        if response.status_code in (401, 403):
            raise AuthenticationError(f"{what}: {registry} refused the credentials")
        if response.status_code != 200:
            raise RegistryError(
                f"{what}: token request to {registry} failed ({response.status_code})"
            )
        body = response.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise AuthenticationError(f"{what}: {registry} returned no token")
        self._tokens[(registry, scope)] = f"Bearer {token}"

    def _send(
        self, method: str, url: str, registry: str, what: str, **kwargs: Any
    ) -> httpx.Response:
        """One request with retries on throttling, 5xx, timeouts and dropped connections."""
        for attempt in range(self.retries + 1):
            try:
                response = self._client(registry).request(method, url, **kwargs)
            except (httpx.TimeoutException, httpx.TransportError) as err:
                if attempt == self.retries:
                    raise RegistryUnavailable(
                        f"{what}: {registry} did not answer ({type(err).__name__})"
                    ) from None
                self._pause(attempt, None)
                continue
            if response.status_code == 429 or response.status_code >= 500:
                if attempt == self.retries:
                    raise RegistryUnavailable(
                        f"{what}: {registry} answered {response.status_code} "
                        f"after {self.retries + 1} attempts"
                    )
                self._pause(attempt, response.headers.get("Retry-After"))
                continue
            return response
        raise AssertionError("unreachable")

    def _pause(self, attempt: int, retry_after: str | None) -> None:
        delay = self.backoff * (2**attempt) * (1 + random.random() / 2)
        if retry_after and retry_after.isdigit():
            delay = max(delay, min(float(retry_after), 30.0))
        self.sleep(delay)

    def _request(
        self, method: str, registry: str, repository: str, path: str, what: str, **kwargs: Any
    ) -> httpx.Response:
        scope = f"repository:{repository}:pull"
        url = f"{self._base_url(registry)}/v2/{repository}/{path}"
        fresh = False  # whether the token just sent was obtained for this very request
        while True:
            headers = {**kwargs.pop("headers", {}), **self._auth_header(registry, scope)}
            response = self._send(method, url, registry, what, headers=headers, **kwargs)
            kwargs["headers"] = {k: v for k, v in headers.items() if k != "Authorization"}
            if response.status_code != 401:
                break
            if fresh:
                raise AuthenticationError(f"{what}: {registry} refused the credentials")
            # No token yet, or one that expired during a long build: get a new one, once.
            self._tokens.pop((registry, scope), None)
            self._authenticate(registry, scope, response.headers.get("WWW-Authenticate", ""), what)
            fresh = True
        if response.status_code in (401, 403):
            raise AuthenticationError(f"{what}: access denied by {registry}")
        if response.status_code == 404:
            raise ImageNotFound(f"{what}: not found on {registry}")
        if response.status_code >= 400:
            raise RegistryError(f"{what}: {registry} answered {response.status_code}")
        return response

    # API ---------------------------------------------------------------------------------

    def manifest(self, ref: ImageRef, reference: str | None = None) -> tuple[dict, str, str]:
        """(manifest, media type, digest) for a tag or digest, verifying a requested digest."""
        reference = reference or ref.digest or ref.tag or "latest"
        what = f"image {ref}"
        response = self._request(
            "GET",
            ref.registry,
            ref.repository,
            f"manifests/{reference}",
            what,
            headers={"Accept": ACCEPT},
        )
        body = response.content
        digest = sha256_digest(body)
        if reference.startswith("sha256:") and digest != reference:
            raise DigestMismatch(f"{what}: manifest digest {digest} is not {reference}")
        try:
            manifest = json.loads(body)
        except ValueError:
            raise RegistryError(f"{what}: the manifest is not JSON") from None
        media_type = manifest.get("mediaType") or response.headers.get("Content-Type", "")
        media_type = media_type.split(";")[0].strip()
        return manifest, media_type, digest

    def _select_platform(self, ref: ImageRef, index: dict) -> str:
        wanted_os, _, rest = self.platform.partition("/")
        wanted_arch, _, wanted_variant = rest.partition("/")
        available = []
        for entry in index.get("manifests", []):
            platform = entry.get("platform") or {}
            available.append(f"{platform.get('os')}/{platform.get('architecture')}")
            if (
                platform.get("os") == wanted_os
                and platform.get("architecture") == wanted_arch
                and (not wanted_variant or platform.get("variant") == wanted_variant)
            ):
                return entry["digest"]
        raise ImageNotFound(
            f"image {ref}: no {self.platform} manifest (has {', '.join(available) or 'none'})"
        )

    def resolve(self, ref: ImageRef) -> ResolvedImage:
        """The image manifest for this platform: its digest, config and layers."""
        manifest, media_type, digest = self.manifest(ref)
        if media_type in INDEX_TYPES or "manifests" in manifest:
            manifest, media_type, digest = self.manifest(ref, self._select_platform(ref, manifest))
        if media_type not in IMAGE_TYPES and "layers" not in manifest:
            raise RegistryError(f"image {ref}: unsupported manifest type {media_type!r}")
        try:
            config = Layer(digest=manifest["config"]["digest"], size=manifest["config"]["size"])
            layers = [
                Layer(digest=item["digest"], size=item["size"]) for item in manifest["layers"]
            ]
        except (KeyError, TypeError):
            raise RegistryError(f"image {ref}: malformed manifest") from None
        return ResolvedImage(
            reference=str(ref), manifest_digest=digest, config=config, layers=layers
        )

    def fetch_blob(
        self,
        ref: ImageRef,
        blob: Layer,
        out: IO[bytes],
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Stream a blob into ``out``, checking size and digest; returns the bytes written."""
        what = f"image {ref}: blob {blob.digest[:19]}"
        algorithm, _, expected = blob.digest.partition(":")
        if algorithm != "sha256":
            raise RegistryError(f"{what}: unsupported digest algorithm {algorithm}")
        scope = f"repository:{ref.repository}:pull"
        url = f"{self._base_url(ref.registry)}/v2/{ref.repository}/blobs/{blob.digest}"
        # Authenticate (and follow the redirect to storage) with a HEAD first, then stream.
        self._request("HEAD", ref.registry, ref.repository, f"blobs/{blob.digest}", what)
        hasher = hashlib.sha256()
        written = 0
        for attempt in range(self.retries + 1):
            try:
                with self._client(ref.registry).stream(
                    "GET", url, headers=self._auth_header(ref.registry, scope)
                ) as response:
                    if response.status_code == 429 or response.status_code >= 500:
                        raise _Retryable(f"answered {response.status_code}")
                    if response.status_code == 404:
                        raise ImageNotFound(f"{what}: not found on {ref.registry}")
                    if response.status_code >= 400:
                        raise RegistryError(
                            f"{what}: {ref.registry} answered {response.status_code}"
                        )
                    # Chunks as the connection delivers them (64 KiB): large enough for
                    # hashlib and write() to release the GIL, and no copy to re-cut them.
                    for chunk in response.iter_bytes():
                        hasher.update(chunk)
                        out.write(chunk)
                        written += len(chunk)
                        if written > blob.size:
                            break
                        if progress:
                            progress(len(chunk))
                break
            except (httpx.TimeoutException, httpx.TransportError, _Retryable) as err:
                if attempt == self.retries or written:
                    reason = str(err) if isinstance(err, _Retryable) else type(err).__name__
                    raise RegistryUnavailable(
                        f"{what}: download from {ref.registry} failed ({reason})"
                    ) from None
                self._pause(attempt, None)
        if written != blob.size or hasher.hexdigest() != expected:
            raise DigestMismatch(
                f"{what}: content does not match its digest ({written} of {blob.size} bytes)"
            )
        return written
