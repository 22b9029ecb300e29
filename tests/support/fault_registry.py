"""A hostile OCI registry on loopback: every route answers what the test tells it to.

Unlike the fault proxy (a real registry behind injected faults), this one serves whatever a
test writes: malformed manifests, digests that point outside a store, redirect loops to itself
or another host, 401 challenges naming any realm, bodies that trickle or never come. Every
request is recorded with its headers, so a test can check what reached which host.

    with FaultRegistry() as a:
        a.image("demo/app", "1.0", [b"layer"])          # a good image, for a baseline
        a.manifest("demo/bad", "1.0", b"[]")            # anything as a manifest
        a.route("GET", r"/v2/demo/app/blobs/.*", lambda r: Answer(307, headers={...}))
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from .loopback import serve

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # silence before the status line
    trickle: tuple[int, float] | None = None  # (bytes per piece, seconds between pieces)
    chunked: bool = False  # no Content-Length: the client cannot know the size in advance


Handler = Callable[[Seen], Answer]


def tar_layer(name: str, data: bytes) -> bytes:
    """A layer archive holding one file (fixed times, so the same input gives the same digest)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FaultRegistry:
    def __init__(self, require: str | None = None) -> None:
        """``require``: an Authorization header every /v2/ request must carry (else 401 with
        a Basic challenge), as a registry with users would."""
        self.require = require
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.requests: list[Seen] = []
        self._closing = threading.Event()
        registry = self

        class Handler_(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                seen = Seen(self.command, self.path, dict(self.headers.items()))
                registry.requests.append(seen)
                answer = registry._answer(seen)
                if answer.delay and registry._closing.wait(answer.delay):
                    return
                self.send_response(answer.status)
                for key, value in answer.headers.items():
                    self.send_header(key, value)
                if answer.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                piece, pause = answer.trickle or (len(answer.body) or 1, 0.0)
                for start in range(0, len(answer.body), piece):
                    data = answer.body[start : start + piece]
                    if answer.chunked:
                        data = f"{len(data):x}\r\n".encode() + data + b"\r\n"
                    self.wfile.write(data)
                    self.wfile.flush()
                    if pause and registry._closing.wait(pause):
                        return
                if answer.chunked:
                    self.wfile.write(b"0\r\n\r\n")

            do_GET = do_HEAD = _handle

        self.server, self.thread = serve(Handler_)

    # where it is ------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def ref(self, name: str) -> str:
        return f"{self.host}/{name}"

    def seen(self, pattern: str) -> list[Seen]:
        return [r for r in self.requests if re.search(pattern, f"{r.method} {r.path}")]

    # what it answers --------------------------------------------------------------------

    def route(self, method: str, path: str, handler: Handler) -> None:
        """Answer ``method`` requests whose path matches ``path`` (the latest route wins)."""
        self.routes.append((method, re.compile(path), handler))

    def _answer(self, seen: Seen) -> Answer:
        path = seen.path.split("?", 1)[0]
        if (
            self.require
            and path.startswith("/v2/")
            and seen.headers.get("Authorization") != (self.require)
        ):
            return Answer(401, b"{}", {"WWW-Authenticate": 'Basic realm="registry"'})
        for method, pattern, handler in reversed(self.routes):
            if method in (seen.method, "*") and pattern.fullmatch(path):
                return handler(seen)
        return Answer(404, b'{"errors":[{"code":"NOT_FOUND"}]}')

    def blob(self, repository: str, data: bytes, **answer: object) -> str:
        digest = digest_of(data)
        self.route("*", f"/v2/{repository}/blobs/{digest}", lambda r: Answer(200, data, **answer))
        return digest

    def manifest(
        self, repository: str, reference: str, body: bytes | object, media_type: str | None = None
    ) -> str:
        """Serve ``body`` (bytes as they are, anything else as JSON) under a tag and its
        digest; returns the digest."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": media_type} if media_type else {}
        digest = digest_of(raw)
        for name in (reference, digest):
            self.route(
                "*",
                f"/v2/{repository}/manifests/{re.escape(name)}",
                lambda r: Answer(200, raw, dict(headers)),
            )
        return digest

    def image(self, repository: str, tag: str, files: list[bytes]) -> dict:
        """A well-formed single-platform image, one tar+gzip layer per file; returns its
        manifest."""
        layers = [tar_layer(f"file{n}", data) for n, data in enumerate(files)]
        diff_ids = [digest_of(gzip.decompress(layer)) for layer in layers]
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }
        ).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"digest": self.blob(repository, config), "size": len(config)},
            "layers": [{"digest": self.blob(repository, d), "size": len(d)} for d in layers],
        }
        self.manifest(repository, tag, manifest, OCI_MANIFEST)
        return manifest

    def close(self) -> None:
        self._closing.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FaultRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def redirect(to: str, status: int = 307) -> Handler:
    return lambda seen: Answer(status, headers={"Location": to})


def challenge(header: str) -> Handler:
    return lambda seen: Answer(401, b"{}", {"WWW-Authenticate": header})


def stalled(seconds: float) -> Handler:
    return lambda seen: Answer(200, b"x", delay=seconds)
