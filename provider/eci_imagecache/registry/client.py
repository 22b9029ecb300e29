"""A small OCI Distribution client on httpx.

- Manifests: OCI image index and Docker manifest list (a platform is chosen, linux/amd64 by
  default), OCI and Docker v2 image manifests, read through pydantic models: anything else (not
  an object, wrong types, a digest that is not ``sha256:<64 hex>``) is a clear error naming the
  image and the registry. Manifests are read up to a size cap; fetched by digest, verified.
- Blobs are streamed (their bodies read by ``bodies.py``) and their sha256 checked as they
  arrive; a mismatch raises before the caller keeps anything.
- Auth: anonymous, Basic, and Bearer tokens from the realm a 401 challenge of the registry itself
  names. Credentials and tokens belong to the registry host they were given for: a request that
  a redirect took to another host carries none, and a challenge from that host is refused.
- Time: every request has connect and read timeouts; every manifest and blob an overall deadline
  (a grace period plus, for a blob, its size over a minimum rate), retries included.
- Transport: HTTPS by default; plain HTTP for loopback hosts and hosts listed as plain-HTTP;
  unverified TLS for hosts listed as insecure. 429, 5xx, timeouts and dropped connections are
  retried by the project's retry policy (``Retry-After`` honoured).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Annotated, Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, ValidationError

from ..engine.planner import Layer, ResolvedImage
from ..engine.refs import ImageRef
from ..retry import Retryable, RetryPolicy, default_hook, retry_after_seconds
from . import bodies

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = {OCI_INDEX, DOCKER_LIST}
IMAGE_TYPES = {OCI_MANIFEST, DOCKER_MANIFEST}
ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])
DOCKER_HUB_API = "registry-1.docker.io"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
SMALL_BODY = 1024 * 1024  # token answers and error bodies


class RegistryError(RuntimeError):
    """A registry call failed; the message names the image and never holds a secret."""


class AuthenticationError(RegistryError):
    pass


class ImageNotFound(RegistryError):
    pass


class RegistryUnavailable(RegistryError):
    """5xx, throttling, timeouts or a missed deadline persisted through every retry."""


class DigestMismatch(RegistryError):
    """Content that does not match its digest, or a digest that is not one."""


class MalformedManifest(RegistryError):
    pass


@dataclass(frozen=True)
class Credentials:
    username: str
    password: SecretStr

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=**********)"


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    try:
        return float(value) if value else default
    except ValueError:
        raise ValueError(f"{name}: not a number: {value[:40]!r}") from None


@dataclass(frozen=True)
class Limits:
    """How long and how much a registry may take. Each has an environment variable."""

    connect_timeout: float = 10.0  # ECI_IMAGECACHE_REGISTRY_CONNECT_TIMEOUT (seconds)
    read_timeout: float = 30.0  # ECI_IMAGECACHE_REGISTRY_READ_TIMEOUT: silence between bytes
    grace: float = 60.0  # ECI_IMAGECACHE_REGISTRY_GRACE: every deadline's fixed part
    min_rate: float = 256 * 1024  # ECI_IMAGECACHE_REGISTRY_MIN_RATE: bytes/s a blob averages
    max_manifest_bytes: int = 4 * 1024 * 1024  # ECI_IMAGECACHE_REGISTRY_MAX_MANIFEST_BYTES
    max_redirects: int = 5

    @classmethod
    def from_env(cls) -> Limits:
        prefix = "ECI_IMAGECACHE_REGISTRY_"
        return cls(
            connect_timeout=_env_float(prefix + "CONNECT_TIMEOUT", cls.connect_timeout),
            read_timeout=_env_float(prefix + "READ_TIMEOUT", cls.read_timeout),
            grace=_env_float(prefix + "GRACE", cls.grace),
            min_rate=_env_float(prefix + "MIN_RATE", cls.min_rate),
            max_manifest_bytes=int(
                _env_float(prefix + "MAX_MANIFEST_BYTES", cls.max_manifest_bytes)
            ),
        )

    def blob_deadline(self, size: int) -> float:
        """Seconds a blob of ``size`` bytes may take, retries included."""
        return self.grace + size / max(1.0, self.min_rate)


# Manifests as the registry sends them: only the fields we use, each checked. -----------------

Digest = Annotated[str, StringConstraints(pattern=DIGEST.pattern)]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Platform(_Wire):
    os: str | None = None
    architecture: str | None = None
    variant: str | None = None


class Descriptor(_Wire):
    media_type: str | None = Field(default=None, alias="mediaType", strict=True)
    digest: Digest = Field(strict=True)
    size: int = Field(ge=0, strict=True)
    platform: Platform | None = None


class IndexManifest(_Wire):
    media_type: str | None = Field(default=None, alias="mediaType", strict=True)
    manifests: list[Descriptor]


class ImageManifest(_Wire):
    media_type: str | None = Field(default=None, alias="mediaType", strict=True)
    config: Descriptor
    layers: list[Descriptor]


def _first_problem(err: ValidationError) -> str:
    problem = err.errors()[0]
    where = ".".join(str(part) for part in problem["loc"]) or "manifest"
    return f"{where}: {problem['msg']}"


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


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


_pool: dict[tuple[bool, int], httpx.Client] = {}
_pool_lock = threading.Lock()


def _shared_client(verify: bool, max_redirects: int) -> httpx.Client:
    """One pooled HTTP client per TLS mode, shared by every RegistryClient of the process:
    building a TLS context costs ~25 ms, and pooled connections skip new handshakes.
    Authentication and timeouts are per request, so sharing carries no credentials across."""
    key = (verify, max_redirects)
    with _pool_lock:
        client = _pool.get(key)
        if client is None:
            client = httpx.Client(
                verify=verify,
                follow_redirects=True,
                max_redirects=max_redirects,
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
    limits: Limits = field(default_factory=Limits.from_env)
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        self._tokens: dict[tuple[str, str], str] = {}

    # plumbing ----------------------------------------------------------------------------

    def _base_url(self, registry: str) -> str:
        host = DOCKER_HUB_API if registry == "docker.io" else registry
        scheme = "http" if registry in self.plain_http or _is_loopback(registry) else "https"
        return f"{scheme}://{host}"

    def _client(self, registry: str) -> httpx.Client:
        return _shared_client(registry not in self.insecure, self.limits.max_redirects)

    def close(self) -> None:
        """Forget tokens; the pooled connections stay for the next client."""
        self._tokens.clear()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _timeout(self, deadline: float) -> httpx.Timeout:
        left = max(0.01, deadline - time.monotonic())
        return httpx.Timeout(
            min(self.limits.read_timeout, left),
            connect=min(self.limits.connect_timeout, left),
        )

    def _auth_header(self, registry: str, scope: str) -> dict[str, str]:
        token = self._tokens.get((registry, scope))
        return {"Authorization": token} if token is not None else {}

    def _check_origin(self, registry: str, answered: httpx.URL, what: str) -> None:
        """A challenge from another host (after a redirect) never gets this registry's
        credentials: they belong to the host they were given for."""
        if _origin(answered) != _origin(httpx.URL(self._base_url(registry))):
            raise AuthenticationError(
                f"{what}: {registry} redirected to {answered.netloc.decode()}, which asks "
                f"for credentials; credentials for {registry} are not sent to another host"
            )

    def _authenticate(
        self, registry: str, scope: str, challenge: str, what: str, deadline: float
    ) -> None:
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
        try:
            realm = httpx.URL(params["realm"])
        except httpx.InvalidURL:
            raise AuthenticationError(f"{what}: {registry} names an invalid token realm") from None
        if realm.scheme not in ("http", "https"):
            raise AuthenticationError(f"{what}: {registry} names an invalid token realm")
        realm_host = realm.netloc.decode()
        if (
            basic
            and realm.scheme != "https"
            and not (_is_loopback(realm_host) or realm_host in self.plain_http)
        ):
            raise AuthenticationError(
                f"{what}: {registry} asks for credentials at a plain-HTTP token service "
                f"({realm.host}); list it in plain_http_registries to allow that"
            )
        query = {"service": params.get("service", ""), "scope": params.get("scope", scope)}
        # The realm's own answer decides: no redirect may carry the credentials elsewhere.
        response, body = self._send(
            "GET",
            realm,
            registry,
            what,
            deadline,
            params=query,
            auth=httpx.BasicAuth(*basic) if basic else None,
            follow_redirects=False,
        )
        if response.status_code in (401, 403):
            raise AuthenticationError(f"{what}: {registry} refused the credentials")
        if response.status_code != 200:
            raise RegistryError(
                f"{what}: token request to {registry} failed ({response.status_code})"
            )
        try:
            answer = json.loads(body)
            token = answer.get("token") or answer.get("access_token")
        except (ValueError, RecursionError, AttributeError):
            token = None
        if not isinstance(token, str) or not token or not token.isprintable():
            raise AuthenticationError(f"{what}: {registry} returned no usable token")
        self._tokens[(registry, scope)] = f"Bearer {token}"

    def _send(
        self,
        method: str,
        url: str | httpx.URL,
        registry: str,
        what: str,
        deadline: float,
        max_body: int = SMALL_BODY,
        **kwargs: Any,
    ) -> tuple[httpx.Response, bytes]:
        """One request and its body (at most ``max_body`` bytes), retried on throttling, 5xx,
        timeouts and dropped connections until the attempts or the deadline run out."""
        client = self._client(registry)
        follow = kwargs.pop("follow_redirects", True)
        auth = kwargs.pop("auth", None)

        def once() -> tuple[httpx.Response, bytes]:
            request = client.build_request(method, url, timeout=self._timeout(deadline), **kwargs)
            response = self._open(client, request, registry, what, follow=follow, auth=auth)
            try:
                body = b"" if method == "HEAD" else self._read(response, max_body, what, deadline)
            except (httpx.TimeoutException, httpx.TransportError) as err:
                raise Retryable(f"did not answer ({type(err).__name__})") from None
            finally:
                response.close()
            return response, body

        try:
            return self.retry.within(deadline - time.monotonic()).call(default_hook, once)
        except Retryable as err:
            raise RegistryUnavailable(f"{what}: {registry} {err}") from None

    def _open(
        self,
        client: httpx.Client,
        request: httpx.Request,
        registry: str,
        what: str,
        follow: bool = True,
        auth: httpx.Auth | None = None,
    ) -> httpx.Response:
        """Send and return the open (streaming) answer; what is worth another try (no answer,
        throttling, 5xx) raises :class:`Retryable`."""
        try:
            response = client.send(request, stream=True, follow_redirects=follow, auth=auth)
        except httpx.TooManyRedirects:
            raise RegistryError(
                f"{what}: {registry} redirected more than {self.limits.max_redirects} times"
            ) from None
        except (httpx.TimeoutException, httpx.TransportError) as err:
            raise Retryable(f"did not answer ({type(err).__name__})") from None
        if response.status_code == 429 or response.status_code >= 500:
            response.close()
            raise Retryable(
                f"answered {response.status_code}",
                retry_after_seconds(response.headers.get("Retry-After")),
            )
        return response

    def _read(self, response: httpx.Response, cap: int, what: str, deadline: float) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise MalformedManifest(f"{what}: the answer is larger than {cap} bytes")
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > cap:
                raise MalformedManifest(f"{what}: the answer is larger than {cap} bytes")
            if time.monotonic() > deadline:
                raise RegistryUnavailable(f"{what}: the answer did not arrive in time")
            chunks.append(chunk)
        return b"".join(chunks)

    def _request(
        self,
        method: str,
        registry: str,
        repository: str,
        path: str,
        what: str,
        deadline: float,
        max_body: int = SMALL_BODY,
        headers: dict[str, str] | None = None,
    ) -> tuple[httpx.Response, bytes]:
        scope = f"repository:{repository}:pull"
        url = f"{self._base_url(registry)}/v2/{repository}/{path}"
        fresh = False  # whether the token just sent was obtained for this very request
        while True:
            sent = {**(headers or {}), **self._auth_header(registry, scope)}
            response, body = self._send(
                method, url, registry, what, deadline, max_body, headers=sent
            )
            if response.status_code != 401:
                break
            self._check_origin(registry, response.url, what)
            if fresh:
                raise AuthenticationError(f"{what}: {registry} refused the credentials")
            # No token yet, or one that expired during a long build: get a new one, once.
            self._tokens.pop((registry, scope), None)
            challenge = response.headers.get("WWW-Authenticate", "")
            self._authenticate(registry, scope, challenge, what, deadline)
            fresh = True
        if response.status_code in (401, 403):
            raise AuthenticationError(f"{what}: access denied by {registry}")
        if response.status_code == 404:
            raise ImageNotFound(f"{what}: not found on {registry}")
        if response.status_code >= 400:
            raise RegistryError(f"{what}: {registry} answered {response.status_code}")
        return response, body

    # API ---------------------------------------------------------------------------------

    def _manifest(
        self, ref: ImageRef, reference: str | None = None
    ) -> tuple[dict[str, Any], str, str]:
        """(manifest object, media type, digest) for a tag or digest, verifying a digest."""
        reference = reference or ref.digest or ref.tag or "latest"
        what = f"image {ref}"
        response, body = self._request(
            "GET",
            ref.registry,
            ref.repository,
            f"manifests/{reference}",
            what,
            time.monotonic() + self.limits.grace,
            max_body=self.limits.max_manifest_bytes,
            headers={"Accept": ACCEPT},
        )
        digest = sha256_digest(body)
        if reference.startswith("sha256:") and digest != reference:
            raise DigestMismatch(f"{what}: manifest digest {digest} is not {reference}")
        bad = f"{what}: malformed manifest from {ref.registry}"
        try:
            manifest = json.loads(body)
        except RecursionError:
            raise MalformedManifest(f"{bad}: nested too deeply") from None
        except ValueError:
            raise MalformedManifest(f"{bad}: not JSON") from None
        if not isinstance(manifest, dict):
            raise MalformedManifest(f"{bad}: not a JSON object")
        media_type = manifest.get("mediaType")
        if media_type is None:
            media_type = response.headers.get("Content-Type", "")
        if not isinstance(media_type, str):
            raise MalformedManifest(f"{bad}: mediaType is not a string")
        return manifest, media_type.split(";")[0].strip(), digest

    def _select_platform(self, ref: ImageRef, index: IndexManifest) -> str:
        wanted_os, _, rest = self.platform.partition("/")
        wanted_arch, _, wanted_variant = rest.partition("/")
        available = []
        for entry in index.manifests:
            platform = entry.platform or Platform()
            available.append(f"{platform.os}/{platform.architecture}")
            if (
                platform.os == wanted_os
                and platform.architecture == wanted_arch
                and (not wanted_variant or platform.variant == wanted_variant)
            ):
                return entry.digest
        raise ImageNotFound(
            f"image {ref}: no {self.platform} manifest (has {', '.join(available) or 'none'})"
        )

    def resolve(self, ref: ImageRef) -> ResolvedImage:
        """The image manifest for this platform: its digest, config and layers."""
        bad = f"image {ref}: malformed manifest from {ref.registry}"
        manifest, media_type, digest = self._manifest(ref)
        if media_type in INDEX_TYPES or "manifests" in manifest:
            try:
                index = IndexManifest.model_validate(manifest)
            except ValidationError as err:
                raise MalformedManifest(f"{bad}: {_first_problem(err)}") from None
            manifest, media_type, digest = self._manifest(ref, self._select_platform(ref, index))
            if media_type in INDEX_TYPES or "manifests" in manifest:
                raise MalformedManifest(f"{bad}: an index inside an index")
        if media_type not in IMAGE_TYPES and "layers" not in manifest:
            raise MalformedManifest(f"{bad}: unsupported manifest type {media_type[:80]!r}")
        try:
            image = ImageManifest.model_validate(manifest)
        except ValidationError as err:
            raise MalformedManifest(f"{bad}: {_first_problem(err)}") from None
        return ResolvedImage(
            reference=str(ref),
            manifest_digest=digest,
            config=Layer(digest=image.config.digest, size=image.config.size),
            layers=[Layer(digest=item.digest, size=item.size) for item in image.layers],
        )

    def fetch_blob(
        self,
        ref: ImageRef,
        blob: Layer,
        out: IO[bytes],
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Stream a blob into ``out``, checking size and digest; returns the bytes written.
        The whole download, retries included, must end within the blob's deadline."""
        what = f"image {ref}: blob {blob.digest[:19]}"
        if not DIGEST.fullmatch(blob.digest):
            raise DigestMismatch(f"{what}: not a sha256 digest")
        started = time.monotonic()
        deadline = started + self.limits.blob_deadline(blob.size)
        scope = f"repository:{ref.repository}:pull"
        path = f"blobs/{blob.digest}"
        url = f"{self._base_url(ref.registry)}/v2/{ref.repository}/{path}"
        # Authenticate (and follow the redirect to storage) with a HEAD first, then stream.
        self._request("HEAD", ref.registry, ref.repository, path, what, deadline)
        hasher = hashlib.sha256()
        written = 0

        def lost(err: Exception) -> Exception:
            """What a network failure (not a local one: a full disk is its own error) means."""
            if time.monotonic() >= deadline:  # reads wait no longer than the deadline
                return RegistryUnavailable(self._too_slow(what, ref, blob, written, started))
            if written:  # ``out`` holds part of the blob: no retry can append to it
                return RegistryUnavailable(
                    f"{what}: download from {ref.registry} failed ({type(err).__name__})"
                )
            return Retryable(f"did not answer ({type(err).__name__})")

        def once() -> None:
            nonlocal written
            try:
                body = bodies.open_body(
                    url,
                    {"User-Agent": "eci-imagecache", **self._auth_header(ref.registry, scope)},
                    verify=ref.registry not in self.insecure,
                    max_redirects=self.limits.max_redirects,
                    connect_timeout=self.limits.connect_timeout,
                    read_timeout=self.limits.read_timeout,
                    deadline=deadline,
                )
            except bodies.TooManyRedirects:
                raise RegistryError(
                    f"{what}: {ref.registry} redirected more than {self.limits.max_redirects} times"
                ) from None
            except (OSError, http.client.HTTPException) as err:
                raise lost(err) from None
            try:
                status = body.status
                if status == 429 or status >= 500:
                    raise Retryable(
                        f"answered {status}", retry_after_seconds(body.header("Retry-After"))
                    )
                if status == 401:
                    self._check_origin(ref.registry, httpx.URL(body.url), what)
                if status == 404:
                    raise ImageNotFound(f"{what}: not found on {ref.registry}")
                if status >= 400:
                    raise RegistryError(f"{what}: {ref.registry} answered {status}")
                while True:
                    try:
                        chunk = body.read()
                    except (OSError, http.client.HTTPException) as err:
                        raise lost(err) from None
                    if not chunk:
                        break
                    hasher.update(chunk)
                    out.write(chunk)
                    written += len(chunk)
                    if written > blob.size:
                        break
                    if time.monotonic() > deadline:
                        message = self._too_slow(what, ref, blob, written, started)
                        raise RegistryUnavailable(message)
                    if progress:
                        progress(len(chunk))
            finally:
                body.close()

        try:
            self.retry.within(deadline - time.monotonic()).call(default_hook, once)
        except Retryable as err:
            if time.monotonic() >= deadline:
                raise RegistryUnavailable(
                    self._too_slow(what, ref, blob, written, started)
                ) from None
            message = f"{what}: download from {ref.registry} failed ({err})"
            raise RegistryUnavailable(message) from None
        if written != blob.size or hasher.hexdigest() != blob.digest.removeprefix("sha256:"):
            raise DigestMismatch(
                f"{what}: content does not match its digest ({written} of {blob.size} bytes)"
            )
        return written

    def _too_slow(self, what: str, ref: ImageRef, blob: Layer, written: int, started: float) -> str:
        seconds = time.monotonic() - started
        return (
            f"{what}: download from {ref.registry} too slow: {written} of {blob.size} bytes "
            f"in {seconds:.0f} s (the deadline allows {self.limits.grace:.0f} s plus "
            f"{self.limits.min_rate / 1024:.0f} KiB/s)"
        )
