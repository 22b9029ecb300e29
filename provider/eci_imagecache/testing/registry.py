"""A real registry on loopback with generated images, for tests, benchmarks and the demo.

``RegistryServer`` runs Debian's ``docker-registry`` (distribution 2.8) with a config of ours:
127.0.0.1, a free port, filesystem storage in a directory we own, optionally htpasswd Basic auth.
``ImageBuilder`` makes real images — tar+gzip layers of generated data with real digests, an OCI
config and manifest — and pushes them through the Distribution API.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import shutil
import socket
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ..registry.client import OCI_INDEX, OCI_MANIFEST, sha256_digest

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port`` (a port left in TIME_WAIT is free, as
    it is for Go's listeners, which set SO_REUSEADDR too)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


class RegistryServer:
    """``docker-registry serve`` on 127.0.0.1; use as a context manager."""

    def __init__(
        self, root: Path, users: dict[str, str] | None = None, port: int | None = None
    ) -> None:
        self.root = root
        self.users = users or {}
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> RegistryServer:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise FileNotFoundError(
                "docker-registry is not installed (scripts/install-system-deps.sh installs it)"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        auth = ""
        if self.users:
            import bcrypt

            lines = [
                f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}"
                for user, pw in self.users.items()
            ]
            (self.root / "htpasswd").write_text("\n".join(lines) + "\n")
            auth = (
                f"auth:\n  htpasswd:\n    realm: eci-imagecache-test\n"
                f"    path: {self.root / 'htpasswd'}\n"
            )
        # docker-registry exits when it cannot listen, and whatever holds the port answers
        # /v2/ in its place: images pushed "here" would land in another registry.
        if port_in_use(self.port):
            raise RuntimeError(f"cannot serve a registry on {self.host}: the port is in use")
        config = self.root / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.root / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n" + auth
        )
        log = open(self.root / "registry.log", "ab")  # noqa: SIM115 - lives as long as the server
        self.process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/v2/", timeout=1)
                if self.process.poll() is None:
                    return self
                raise RuntimeError(
                    f"docker-registry exited: {(self.root / 'registry.log').read_text()}"
                )
            except httpx.TransportError:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"docker-registry exited: {(self.root / 'registry.log').read_text()}"
                    ) from None
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not start within 15 s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class Blob:
    digest: str
    data: bytes
    media_type: str

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


_RANDOM_PIECE = 64 << 20


def make_layer(
    seed: str,
    size: int,
    compressible: bool = False,
    files: list[tuple[tarfile.TarInfo, bytes | None]] | None = None,
) -> tuple[Blob, str]:
    """A gzipped tar layer holding one file of ``size`` generated bytes (after ``files``, when
    given: programs for images that run): (blob, diff id)."""
    rng = random.Random(seed)
    if compressible:
        payload = (seed.encode() * (size // max(1, len(seed)) + 1))[:size]
    else:  # in pieces: randbytes takes at most 2**31 bits at once
        pieces = [
            rng.randbytes(min(_RANDOM_PIECE, size - at)) for at in range(0, size, _RANDOM_PIECE)
        ]
        payload = b"".join(pieces)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in files or []:
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
        info = tarfile.TarInfo(f"data/{hashlib.sha256(seed.encode()).hexdigest()[:16]}.bin")
        info.size, info.mtime, info.mode = len(payload), 0, 0o644
        tar.addfile(info, io.BytesIO(payload))
    tar_bytes = raw.getvalue()
    gz = gzip.compress(tar_bytes, compresslevel=1, mtime=0)
    return Blob(sha256_digest(gz), gz, OCI_LAYER), sha256_digest(tar_bytes)


@dataclass
class PushedImage:
    repository: str
    tag: str
    manifest: bytes
    layers: list[Blob]
    config: Blob

    @property
    def manifest_digest(self) -> str:
        return sha256_digest(self.manifest)

    def reference(self, host: str) -> str:
        return f"{host}/{self.repository}:{self.tag}"

    @property
    def content_bytes(self) -> int:
        return self.config.size + sum(layer.size for layer in self.layers)


@dataclass
class ImageBuilder:
    """Builds and pushes images to a registry at ``url`` (``http://127.0.0.1:port``)."""

    url: str
    auth: tuple[str, str] | None = None
    _client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self._client = httpx.Client(base_url=self.url, auth=self.auth, timeout=120)

    def close(self) -> None:
        self._client.close()

    def push_blob(self, repository: str, blob: Blob) -> None:
        if self._client.head(f"/v2/{repository}/blobs/{blob.digest}").status_code == 200:
            return
        start = self._client.post(f"/v2/{repository}/blobs/uploads/")
        start.raise_for_status()
        location = start.headers["Location"]
        sep = "&" if "?" in location else "?"
        done = self._client.put(
            f"{location}{sep}digest={blob.digest}",
            content=blob.data,
            headers={"Content-Type": "application/octet-stream"},
        )
        done.raise_for_status()

    def push_manifest(
        self, repository: str, reference: str, manifest: dict, media_type: str
    ) -> str:
        body = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
        response = self._client.put(
            f"/v2/{repository}/manifests/{reference}",
            content=body,
            headers={"Content-Type": media_type},
        )
        response.raise_for_status()
        return body

    def push_image(
        self,
        repository: str,
        tag: str,
        layers: list[tuple[Blob, str]],
        architecture: str = "amd64",
        config: dict | None = None,
    ) -> PushedImage:
        """Push an image of these (blob, diff id) layers; ``config`` is the image's run config
        (Cmd, Env, ...), a no-op command unless given."""
        config_doc = {
            "architecture": architecture,
            "os": "linux",
            "config": config if config is not None else {"Cmd": ["/bin/true"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id for _, diff_id in layers]},
        }
        config_bytes = json.dumps(config_doc, sort_keys=True).encode()
        config = Blob(sha256_digest(config_bytes), config_bytes, OCI_CONFIG)
        for blob in [config, *(b for b, _ in layers)]:
            self.push_blob(repository, blob)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": [b.descriptor() for b, _ in layers],
        }
        body = self.push_manifest(repository, tag, manifest, OCI_MANIFEST)
        return PushedImage(repository, tag, body, [b for b, _ in layers], config)

    def push_index(self, repository: str, tag: str, images: dict[str, PushedImage]) -> str:
        """An OCI index (tagged ``tag``) over per-architecture images already pushed."""
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": img.manifest_digest,
                    "size": len(img.manifest),
                    "platform": {"os": "linux", "architecture": arch},
                }
                for arch, img in sorted(images.items())
            ],
        }
        return sha256_digest(self.push_manifest(repository, tag, index, OCI_INDEX))


@dataclass
class SampleImages:
    """The standard set: two images sharing a base, a second version, and a multi-arch index.

    When a static busybox is installed, the shared base holds it too and every image runs: it
    prints that it is running and waits until stopped (``runs`` is True). Without one, the
    images hold data only."""

    base: list[tuple[Blob, str]]
    images: dict[str, PushedImage]  # "repository:tag" -> image
    runs: bool = False


def push_samples(builder: ImageBuilder, layer_size: int = 256 * 1024) -> SampleImages:
    from .runnable import BusyboxMissing, busybox_files, idle_config

    try:
        programs = busybox_files()
    except BusyboxMissing:
        programs = None
    base = [
        make_layer("base-os", layer_size, files=programs),
        make_layer("base-runtime", layer_size // 2),
    ]
    images = {}

    def config(name: str, arch: str = "amd64") -> dict | None:
        return idle_config(name) if programs and arch == "amd64" else None

    def add(repository: str, tag: str, extra: list[str]) -> None:
        own = [make_layer(f"{repository}:{name}", layer_size // 4) for name in extra]
        images[f"{repository}:{tag}"] = builder.push_image(
            repository, tag, [*base, *own], config=config(f"{repository}:{tag}")
        )

    add("demo/web", "1.0", ["web-1.0"])
    add("demo/web", "1.1", ["web-1.1"])
    add("demo/worker", "1.0", ["worker-1.0"])
    add("demo/tools", "1.0", ["tools-a", "tools-b"])
    per_arch = {
        arch: builder.push_image(
            "demo/multi",
            f"1.0-{arch}",
            [*base, make_layer(f"multi-{arch}", layer_size // 4)],
            architecture=arch,
            config=config("demo/multi:1.0", arch),
        )
        for arch in ("amd64", "arm64")
    }
    builder.push_index("demo/multi", "1.0", per_arch)
    images["demo/multi:1.0"] = per_arch["amd64"]
    return SampleImages(base=base, images=images, runs=programs is not None)


def default_registry_root() -> Path:
    return Path(
        os.environ.get("ECI_IMAGECACHE_REGISTRY_ROOT")
        or Path.home() / ".cache" / "eci-imagecache" / "registry"
    )
