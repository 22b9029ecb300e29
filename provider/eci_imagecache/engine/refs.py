"""Container image references: parsing and normalization.

Follows the Docker reference grammar: ``[host[:port]/]path[:tag][@digest]``. A reference without
a registry host is on Docker Hub (``docker.io``); a single-component Docker Hub path lives under
``library/``; a reference with neither tag nor digest means ``:latest``.
"""

from __future__ import annotations

import re
from functools import total_ordering

from pydantic import BaseModel, ConfigDict, model_validator

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
MAX_NAME_LENGTH = 255

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_HOST_LABEL = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_HOST = re.compile(rf"(?:{_HOST_LABEL}(?:\.{_HOST_LABEL})*|\[[0-9A-Fa-f:]+\])(?::[0-9]{{1,5}})?")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


class ImageRefError(ValueError):
    """A malformed image reference; the message says which part is wrong."""

    def __init__(self, reference: str, problem: str) -> None:
        super().__init__(f"invalid image reference {reference!r}: {problem}")
        self.reference = reference
        self.problem = problem


@total_ordering
class ImageRef(BaseModel):
    """A normalized image reference. ``str(ref)`` is its canonical spelling."""

    model_config = ConfigDict(frozen=True)

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @model_validator(mode="after")
    def _has_version(self) -> ImageRef:
        if self.tag is None and self.digest is None:
            raise ValueError("an image reference needs a tag or a digest")
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
        if not _DIGEST.fullmatch(digest):
            raise ImageRefError(original, f"digest {digest!r} is not algorithm:hex")
        algorithm, _, hex_part = digest.partition(":")
        expected = _HEX_LENGTHS.get(algorithm)
        if expected is not None and len(hex_part) != expected:
            raise ImageRefError(
                original, f"{algorithm} digest must have {expected} hex digits, not {len(hex_part)}"
            )
        digest = f"{algorithm}:{hex_part.lower()}"

    host, path = _split_host(text)
    tag = None
    # A tag follows the last ':' of the path (after the host, which may carry a port).
    if ":" in path:
        path, _, tag = path.rpartition(":")
        if not _TAG.fullmatch(tag):
            raise ImageRefError(original, f"tag {tag!r} is not valid (letters, digits, _ . -)")
    if not path:
        raise ImageRefError(original, "has no repository name")

    if host is not None and not _HOST.fullmatch(host):
        raise ImageRefError(original, f"registry host {host!r} is not valid")
    for component in path.split("/"):
        if not component:
            raise ImageRefError(original, "has an empty path component")
        if not _COMPONENT.fullmatch(component):
            hint = " (repository names are lowercase)" if component != component.lower() else ""
            raise ImageRefError(original, f"path component {component!r} is not valid{hint}")

    registry = (host or DEFAULT_REGISTRY).lower()
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"
    if len(registry) + 1 + len(path) > MAX_NAME_LENGTH:
        raise ImageRefError(original, f"name is longer than {MAX_NAME_LENGTH} characters")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return ImageRef(registry=registry, repository=path, tag=tag, digest=digest)


def normalize(text: str) -> str:
    """The canonical spelling of a reference (``nginx`` -> ``docker.io/library/nginx:latest``)."""
    return str(parse_image_ref(text))
