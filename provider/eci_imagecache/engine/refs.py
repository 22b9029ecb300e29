"""Container image references: parsing and normalization.

Follows the reference grammar of the OCI distribution spec (and Docker's, which it comes from):
``[host[:port]/]path[:tag][@digest]``. A reference without a registry host is on Docker Hub
(``docker.io``); a single-component Docker Hub path lives under ``library/``; a reference with
neither tag nor digest means ``:latest``. An :class:`ImageRef` holds the normalized parts and
checks them again however it is built, so a malformed one cannot exist.
"""

from __future__ import annotations

import re
from functools import total_ordering
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

from .errors import EngineError

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
DOCKER_HUB_ALIASES = ("index.docker.io", "registry-1.docker.io")
MAX_NAME_LENGTH = 255  # distribution's reference.NameTotalLengthMax: host and path together
MAX_PORT = 65535  # a TCP port

# Distribution spec (spec.md, "Pulling manifests"): a repository path component.
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
# distribution/reference: a domain is dot-separated labels (or an IPv6 address in brackets),
# then an optional port of decimal digits.
_HOST_LABEL = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_HOST = re.compile(rf"(?:{_HOST_LABEL}(?:\.{_HOST_LABEL})*|\[[0-9A-Fa-f:]+\])(?::([0-9]+))?")
# Distribution spec: a tag is at most 128 characters of [a-zA-Z0-9_.-], not starting with . or -
# (ASCII only: Python's \w would let other scripts' letters and digits in).
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# OCI image spec (descriptor.md, "Registered algorithms"): sha256 and sha512, lowercase hex of
# 64 and 128 digits; registries refuse any other algorithm or length.
_HEX_LENGTHS = {"sha256": 64, "sha512": 128}
_DIGEST = re.compile(r"([A-Za-z0-9+._-]+):([0-9A-Fa-f]+)")

# The same rules on the normalized parts an ImageRef holds (lowercase host and digest), checked
# by pydantic's compiled patterns: stores load many references, and a Python check of each part
# would cost several times the load.
_PORT = r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_LABEL = r"(?:[a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])"
NormalHost = Annotated[
    str, StringConstraints(pattern=rf"^(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:]+\])(?::{_PORT})?$")
]
_NORMAL_COMPONENT = _COMPONENT.pattern
NormalPath = Annotated[
    str, StringConstraints(pattern=rf"^{_NORMAL_COMPONENT}(?:/{_NORMAL_COMPONENT})*$")
]
NormalTag = Annotated[str, StringConstraints(pattern=rf"^{_TAG.pattern}$")]
NormalDigest = Annotated[
    str, StringConstraints(pattern=r"^(?:sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")
]


class ImageRefError(EngineError, ValueError):
    """A malformed image reference; the message says which part is wrong."""

    def __init__(self, reference: str, problem: str) -> None:
        super().__init__(f"invalid image reference {reference!r}: {problem}")
        self.reference = reference
        self.problem = problem


def _host_problem(host: str) -> str | None:
    shape = _HOST.fullmatch(host)
    if shape is None:
        return f"registry host {host!r} is not valid"
    port = shape.group(1)
    if port is not None and not 1 <= int(port) <= MAX_PORT:
        return f"registry port {port} is not a port (1 to {MAX_PORT})"
    return None


def _path_problem(path: str) -> str | None:
    if not path:
        return "has no repository name"
    for component in path.split("/"):
        if not component:
            return "has an empty path component"
        if not _COMPONENT.fullmatch(component):
            hint = " (repository names are lowercase)" if component != component.lower() else ""
            return f"path component {component!r} is not valid{hint}"
    return None


def _tag_problem(tag: str) -> str | None:
    if _TAG.fullmatch(tag):
        return None
    return f"tag {tag!r} is not valid (1 to 128 of A-Z a-z 0-9 _ . -, not starting with . or -)"


def _digest_problem(digest: str) -> str | None:
    shape = _DIGEST.fullmatch(digest)
    if shape is None:
        return f"digest {digest!r} is not algorithm:hex"
    algorithm, hex_part = shape.groups()
    expected = _HEX_LENGTHS.get(algorithm)
    if expected is None:
        return f"digest algorithm {algorithm!r} is not sha256 or sha512"
    if len(hex_part) != expected:
        return f"{algorithm} digest must have {expected} hex digits, not {len(hex_part)}"
    return None


def registry_server(server: str) -> str:
    """A registry server as credentials name it, spelled as image references name its host:
    lowercase, without scheme or trailing slash, Docker Hub as ``docker.io`` (also as Docker's
    own config spells it, ``https://index.docker.io/v1/``). The model and the diff both use it,
    so a respelled server is the same server to both."""
    server = server.strip().lower().removeprefix("https://").removeprefix("http://")
    server = server.rstrip("/")
    host = server.split("/", 1)[0]
    return DEFAULT_REGISTRY if host in (DEFAULT_REGISTRY, *DOCKER_HUB_ALIASES) else server


def _length_problem(registry: str, path: str) -> str | None:
    if len(registry) + 1 + len(path) > MAX_NAME_LENGTH:
        return f"name is longer than {MAX_NAME_LENGTH} characters"
    return None


@total_ordering
class ImageRef(BaseModel):
    """A normalized image reference. ``str(ref)`` is its canonical spelling."""

    model_config = ConfigDict(frozen=True)

    # The parser's rules, on the normalized parts, however the reference was built.
    registry: NormalHost
    repository: NormalPath
    tag: NormalTag | None = None
    digest: NormalDigest | None = None

    @model_validator(mode="after")
    def _complete(self) -> ImageRef:
        if self.tag is None and self.digest is None:
            raise ValueError("an image reference needs a tag or a digest")
        if problem := _length_problem(self.registry, self.repository):
            raise ValueError(problem)
        return self

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        return parse_image_ref(text)

    @property
    def repository_key(self) -> str:
        """``registry/repository``: what "the same image, any version" means."""
        return f"{self.registry}/{self.repository}"

    @property
    def version(self) -> str:
        """The most precise version this reference pins: the digest, else the tag."""
        return self.digest or f"tag:{self.tag}"

    def __str__(self) -> str:
        text = self.repository_key
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, ImageRef):
            return NotImplemented
        return str(self) < str(other)


def _split_host(name: str) -> tuple[str | None, str]:
    """Split ``host/path``; the first component is a host only if it looks like one."""
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        return first, rest
    return None, name


def parse_image_ref(text: str) -> ImageRef:
    """Parse and normalize one reference, raising :class:`ImageRefError` with the reason."""
    if not isinstance(text, str):
        raise ImageRefError(repr(text), "must be a string")
    original = text
    text = text.strip()
    if not text:
        raise ImageRefError(original, "is empty")
    if any(ch.isspace() for ch in text):
        raise ImageRefError(original, "contains white space")

    digest = None
    if "@" in text:
        text, _, digest = text.partition("@")
        if problem := _digest_problem(digest):
            raise ImageRefError(original, problem)
        algorithm, _, hex_part = digest.partition(":")
        digest = f"{algorithm}:{hex_part.lower()}"

    host, path = _split_host(text)
    tag = None
    # A tag follows the last ':' of the path (after the host, which may carry a port).
    if ":" in path:
        path, _, tag = path.rpartition(":")
        if problem := _tag_problem(tag):
            raise ImageRefError(original, problem)
    problem = (_host_problem(host) if host is not None else None) or _path_problem(path)
    if problem:
        raise ImageRefError(original, problem)

    registry = (host or DEFAULT_REGISTRY).lower()
    if registry in DOCKER_HUB_ALIASES:
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"
    if problem := _length_problem(registry, path):
        raise ImageRefError(original, problem)
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return ImageRef(registry=registry, repository=path, tag=tag, digest=digest)


def normalize(text: str) -> str:
    """The canonical spelling of a reference (``nginx`` -> ``docker.io/library/nginx:latest``)."""
    return str(parse_image_ref(text))
