"""Specs (what the user asks for) and records (what a backend holds), as pydantic models.

Validation here is the single source of the rules ``check`` reports: each failure names the
property, e.g. ``images: at most 20 images per cache, got 21``.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .refs import ImageRef, parse_image_ref

MAX_IMAGES_PER_CACHE = 20
DEFAULT_MANUAL_SIZE_GIB = 20
BASE_EPHEMERAL_STORAGE_GIB = 30
MAX_EVENTS = 50
MAX_TAGS = 20
GIB = 1024**3
GROUP_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,126}[a-z0-9]")


class EvictionStrategy(StrEnum):
    NEVER = ""  # the API's empty string: never evicted automatically
    LRU = "LRU"


class CacheKind(StrEnum):
    MANUAL = "manual"
    AUTO = "auto"


class CacheStatus(StrEnum):
    CREATING = "Creating"
    READY = "Ready"
    FAILED = "Failed"
    # Updating after an in-place change that rebuilds; the previous snapshot stays usable.
    UPDATING = "Updating"
    # The API's other documented states: Preparing reads as Creating; an update that failed.
    UPDATE_FAILED = "UpdateFailed"
    # A state the API reported that this version does not know: shown, never used.
    UNKNOWN = "Unknown"


class SnapshotKind(StrEnum):
    NONE = "none"
    LOCAL = "local"  # instant cache: temporary local snapshot, usable already
    STANDARD = "standard"


def _parse_images(value: object) -> list[ImageRef]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ValueError("must be a list of image references")
    return [v if isinstance(v, ImageRef) else parse_image_ref(v) for v in value]


def unique_images(images: list[ImageRef]) -> list[ImageRef]:
    """Sorted, without duplicates: order and repetition do not matter to a cache."""
    return sorted(set(images))


class RegistryCredential(BaseModel):
    """Credentials for one private registry. The password never leaves as plain text."""

    model_config = ConfigDict(frozen=True)

    server: str = Field(min_length=1)
    username: str = Field(min_length=1)
    password: SecretStr

    @field_validator("server")
    @classmethod
    def _normalize_server(cls, server: str) -> str:
        server = server.strip().lower().removeprefix("https://").removeprefix("http://")
        return server.rstrip("/")


class AcrRegistry(BaseModel):
    """A Container Registry Enterprise Edition instance pulled from without a password
    (the API's ``AcrRegistryInfo``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    instance_id: str = Field(min_length=1)
    instance_name: str | None = None
    region_id: str | None = None
    domains: list[str] = Field(default_factory=list)


class ImageCacheSpec(BaseModel):
    """A manual image cache as the user declares it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=2, max_length=128, pattern=r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")
    images: list[ImageRef]
    size_gib: int = Field(default=DEFAULT_MANUAL_SIZE_GIB, ge=1, le=2048)
    retention_days: int | None = Field(default=None, ge=1, le=3650)
    eviction: EvictionStrategy = EvictionStrategy.NEVER
    instant: bool = False
    instant_copies: int = Field(default=1, ge=1, le=5)
    layer_reuse: bool = False
    credentials: list[RegistryCredential] = Field(default_factory=list)
    insecure_registries: list[str] = Field(default_factory=list)
    plain_http_registries: list[str] = Field(default_factory=list)
    # Cloud placement: where the temporary instance that builds the cache runs.
    vswitch_id: str | None = None
    security_group_id: str | None = None
    eip_instance_id: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    # Cloud only: where the cache lives and how many regular snapshot copies it keeps.
    resource_group_id: str | None = None
    zone_id: str | None = None
    standard_copies: int | None = Field(default=None, ge=1, le=10)
    acr_registries: list[AcrRegistry] = Field(default_factory=list)

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: dict[str, str]) -> dict[str, str]:
        if len(tags) > MAX_TAGS:
            raise ValueError(f"at most {MAX_TAGS} tags, got {len(tags)}")
        return tags

    @field_validator("images", mode="before")
    @classmethod
    def _images(cls, value: object) -> list[ImageRef]:
        images = unique_images(_parse_images(value))
        if not images:
            raise ValueError("a cache needs at least one image")
        if len(images) > MAX_IMAGES_PER_CACHE:
            raise ValueError(f"at most {MAX_IMAGES_PER_CACHE} images per cache, got {len(images)}")
        return images

    @field_validator("eviction", mode="before")
    @classmethod
    def _eviction(cls, value: object) -> object:
        if value is None:
            return EvictionStrategy.NEVER
        if isinstance(value, str) and value.upper() in ("LRU", ""):
            return value.upper()
        raise ValueError(f"unknown eviction strategy {value!r}: use '' (never) or 'LRU'")

    @field_validator("insecure_registries", "plain_http_registries")
    @classmethod
    def _hosts(cls, hosts: list[str]) -> list[str]:
        return sorted({h.strip().lower() for h in hosts})

    @model_validator(mode="after")
    def _credentials_are_used(self) -> ImageCacheSpec:
        registries = {ref.registry for ref in self.images}
        for cred in self.credentials:
            if cred.server not in registries:
                raise ValueError(
                    f"credentials: registry {cred.server!r} is not used by any image "
                    f"(images use {', '.join(sorted(registries))})"
                )
        return self


class ContainerSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=128, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
    image: ImageRef
    image_pull_policy: str = Field(default="IfNotPresent", pattern=r"^(Always|IfNotPresent|Never)$")
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    ports: list[int] = Field(default_factory=list)
    cpu: float | None = Field(default=None, gt=0, le=64)
    memory_gib: float | None = Field(default=None, gt=0, le=512)
    working_dir: str | None = Field(default=None, pattern=r"^/")

    @field_validator("image", mode="before")
    @classmethod
    def _image(cls, value: object) -> ImageRef:
        return value if isinstance(value, ImageRef) else parse_image_ref(value)  # type: ignore[arg-type]


class CacheSelection(StrEnum):
    NONE = "none"
    AUTO_MATCH = "auto"  # match only
    AUTO_CREATE = "auto-create"  # match, and create a cache on a miss
    EXPLICIT = "explicit"


class ContainerGroupSpec(BaseModel):
    """What matching needs of a container group: its images, storage and cache choice."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    containers: list[ContainerSpec] = Field(min_length=1)
    init_containers: list[ContainerSpec] = Field(default_factory=list)
    extra_ephemeral_storage_gib: int = Field(default=0, ge=0, le=2048)
    cache: CacheSelection = CacheSelection.AUTO_CREATE
    cache_id: str | None = None
    cpu: float | None = Field(default=None, gt=0, le=64)
    memory_gib: float | None = Field(default=None, gt=0, le=512)
    restart_policy: str = Field(default="Always", pattern=r"^(Always|OnFailure|Never)$")
    credentials: list[RegistryCredential] = Field(default_factory=list)
    insecure_registries: list[str] = Field(default_factory=list)
    plain_http_registries: list[str] = Field(default_factory=list)
    vswitch_id: str | None = None
    security_group_id: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    # Cloud only: public network access (an existing EIP, or one created with the group),
    # placement, and ACR Enterprise instances pulled from without a password.
    eip_instance_id: str | None = None
    auto_create_eip: bool = False
    eip_bandwidth_mbps: int | None = Field(default=None, ge=1, le=200)
    resource_group_id: str | None = None
    zone_id: str | None = None
    acr_registries: list[AcrRegistry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_eip(self) -> ContainerGroupSpec:
        if self.eip_instance_id and self.auto_create_eip:
            raise ValueError("auto_create_eip: not with eip_instance_id (the group has that one)")
        if self.eip_bandwidth_mbps is not None and not self.auto_create_eip:
            raise ValueError("eip_bandwidth_mbps: only for an EIP created with auto_create_eip")
        return self

    @field_validator("name")
    @classmethod
    def _group_name(cls, name: str) -> str:
        # ECI's rule for ContainerGroupName (CreateContainerGroup).
        if not GROUP_NAME.fullmatch(name):
            raise ValueError(
                f"{name!r} is not a valid container group name: 2 to 128 characters, lowercase "
                "letters, digits and hyphens, not starting or ending with a hyphen"
            )
        return name

    @model_validator(mode="after")
    def _explicit_needs_id(self) -> ContainerGroupSpec:
        if self.cache == CacheSelection.EXPLICIT and not self.cache_id:
            raise ValueError("cache_id: an explicit cache selection needs a cache id")
        if self.cache != CacheSelection.EXPLICIT and self.cache_id:
            raise ValueError("cache_id: only allowed when the cache selection is explicit")
        return self

    @property
    def images(self) -> list[ImageRef]:
        return unique_images([c.image for c in [*self.init_containers, *self.containers]])

    def pull_policy(self, image: ImageRef) -> str:
        """The strictest policy any container declares for this image."""
        policies = {
            c.image_pull_policy
            for c in [*self.init_containers, *self.containers]
            if c.image == image
        }
        return "Always" if "Always" in policies else "IfNotPresent"

    @property
    def ephemeral_storage_gib(self) -> int:
        return BASE_EPHEMERAL_STORAGE_GIB + self.extra_ephemeral_storage_gib


class Quota(BaseModel):
    """Separate limits for manual and automatic caches (ECI's ListUsage)."""

    model_config = ConfigDict(frozen=True)

    max_manual: int = Field(default=50, ge=0)
    max_auto: int = Field(default=50, ge=0)

    def limit(self, kind: CacheKind) -> int:
        return self.max_manual if kind == CacheKind.MANUAL else self.max_auto


class CacheEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    at: datetime
    kind: str  # e.g. "Normal" / "Warning"
    reason: str
    message: str


class CacheRecord(BaseModel):
    """An image cache as a backend holds it: enough for matching, lifecycle and display."""

    id: str
    name: str
    kind: CacheKind
    region: str
    images: list[ImageRef]
    size_gib: int
    status: CacheStatus
    snapshot: SnapshotKind = SnapshotKind.NONE
    eviction: EvictionStrategy
    retention_days: int | None = None
    created_at: datetime
    last_used_at: datetime | None = None
    progress: int = Field(default=0, ge=0, le=100)
    failure: str | None = None
    # What the user asked for besides the images (manual caches only).
    instant: bool = False
    layer_reuse: bool = False
    credential_servers: list[str] = Field(default_factory=list)
    # What the last build did.
    snapshot_id: str | None = None
    layer_count: int = 0
    content_bytes: int = 0
    fetched_bytes: int = 0
    reused_bytes: int = 0
    plan: str | None = None
    # What the cloud reports back (None: this backend does not report it).
    tags: dict[str, str] | None = None
    resource_group_id: str | None = None

    @property
    def usable(self) -> bool:
        """Ready, or still building but already backed by an instant local snapshot."""
        return self.status in (CacheStatus.READY, CacheStatus.UPDATING) or (
            self.status == CacheStatus.CREATING and self.snapshot == SnapshotKind.LOCAL
        )


def validation_failures(exc: ValidationError) -> list[tuple[str, str]]:
    """(property, reason) pairs from a pydantic error, for ``check`` to report."""
    failures = []
    for error in exc.errors():
        location = [str(p) for p in error["loc"] if not isinstance(p, int)]
        message = str(error["msg"]).removeprefix("Value error, ")
        # Model-level validators name their property in the message: "cache_id: ...".
        if not location and ":" in message and " " not in message.split(":", 1)[0]:
            prop, message = message.split(":", 1)
            location = [prop]
            message = message.strip()
        failures.append((".".join(location) or "(resource)", message))
    return failures


class GroupStatus(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class ContainerStatus(BaseModel):
    """A container's state as ECI reports it (Waiting, Running, Terminated)."""

    name: str
    init: bool = False
    state: str = "Waiting"
    exit_code: int | None = None
    restart_count: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    reason: str = ""


class ContainerGroupRecord(BaseModel):
    """A container group as a backend holds it, with the cache decision made at creation."""

    id: str
    name: str
    region: str
    status: GroupStatus
    images: list[ImageRef]
    created_at: datetime
    ephemeral_storage_gib: int
    cache_id: str | None = None
    cache_name: str | None = None
    match_degree: str = "none"
    match_reason: str = ""
    auto_created_cache_id: str | None = None
    bytes_fetched: int = 0
    bytes_from_cache: int = 0
    preparation_seconds: float = 0.0
    failure: str | None = None
    # Where it runs: why it is not running, its containers, where its ports answer, and the
    # time from the request to start containers to the first container's process running.
    status_reason: str = ""
    containers: list[ContainerStatus] = Field(default_factory=list)
    address: str | None = None
    container_start_seconds: float | None = None
