"""Specs (what the user asks for) and records (what a backend holds), as pydantic models.

Validation here is the single source of the rules: the providers' ``check``, the CLI and the
emulator all build these specs, and each failure names the property, e.g. ``images: at most 20
images per cache, got 21``, as fields (see ``invalid_properties``). Each rule says where it
comes from: the ECI API reference (the docstrings of the official SDK's request models, e.g.
``CreateContainerGroupRequestTag``), the vendor's image cache document, or the OCI
distribution spec (image references, in ``refs``). Where a source is unclear, the rule is as
strict as the service.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import InvalidProperty, path_of
from .refs import ImageRef, parse_image_ref, registry_server

MAX_IMAGES_PER_CACHE = 20
DEFAULT_MANUAL_SIZE_GIB = 20
BASE_EPHEMERAL_STORAGE_GIB = 30
MAX_EVENTS = 50
MAX_TAGS = 20
GIB = 1024**3
GROUP_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,126}[a-z0-9]")
# The vendor's document: automatic caches are named ``auto-create-for-<instance id>``.
AUTO_CACHE_PREFIX = "auto-create-for-"


def _not_a_boolean(value: object) -> object:
    """JSON's true and false are not numbers (pydantic's lax mode would read them as 1 and 0)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {str(value).lower()}")
    return value


NUMBER = BeforeValidator(_not_a_boolean)
# CreateContainerGroupRequestContainerPort.Port: "Valid values: 1 to 65535."
Port = Annotated[int, NUMBER, Field(ge=1, le=65535)]


def _vendor_ids(prefix: str, kind: str, most: int = 1) -> AfterValidator:
    """An id of the vendor's shape: ``prefix-`` then lowercase letters and digits; ``most`` > 1
    takes that many, comma-separated. ``kind`` is what the id names, with its article."""
    shape = re.compile(rf"{prefix}-[0-9a-z]+")

    def check(value: str) -> str:
        ids = value.split(",") if most > 1 else [value]
        if len(ids) > most:
            raise ValueError(f"at most {most} ids, got {len(ids)}")
        for one in ids:
            if not shape.fullmatch(one):
                raise ValueError(f"{one[:80]!r} is not the id of {kind} ({prefix}-...)")
        return value

    return AfterValidator(check)


# VSwitchId (CreateContainerGroup, CreateImageCache): "up to 10 vSwitch IDs ... separated with
# commas (,). Example: vsw-***,vsw-***". The other ids follow the same convention of the
# vendor's APIs: security groups sg-..., EIPs eip-..., resource groups rg-..., and the image
# cache id CreateImageCache returns, imc-... (an id never becomes a path: "../etc" is refused).
VSwitchIds = Annotated[str, _vendor_ids("vsw", "a vSwitch", most=10)]
SecurityGroupId = Annotated[str, _vendor_ids("sg", "a security group")]
EipId = Annotated[str, _vendor_ids("eip", "an EIP")]
ResourceGroupId = Annotated[str, _vendor_ids("rg", "a resource group")]
CacheId = Annotated[str, _vendor_ids("imc", "an image cache")]

# Tags (CreateContainerGroupRequestTag; CreateImageCacheRequestTag: "Valid values of N: 1 to
# 20"): "The tag key cannot be an empty string ... can be up to 64 characters in length and
# cannot contain http:// or https://. The tag key cannot start with acs: or aliyun." "The tag
# value ... can be up to 128 characters in length. It cannot start with acs: and cannot
# contain http:// or https://."
MAX_TAG_KEY = 64
MAX_TAG_VALUE = 128
RESERVED_TAG_KEY_PREFIXES = ("acs:", "aliyun")
RESERVED_TAG_VALUE_PREFIXES = ("acs:",)


def _check_tags(tags: dict[str, str]) -> dict[str, str]:
    if len(tags) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags, got {len(tags)}")
    for key, value in tags.items():
        if not key:
            raise ValueError("a tag key cannot be empty")
        if len(key) > MAX_TAG_KEY:
            raise ValueError(f"tag key {key[:20]!r}... is longer than {MAX_TAG_KEY} characters")
        if len(value) > MAX_TAG_VALUE:
            raise ValueError(f"the value of tag {key!r} is longer than {MAX_TAG_VALUE} characters")
        if key.startswith(RESERVED_TAG_KEY_PREFIXES):
            raise ValueError(f"tag key {key!r} starts with a prefix the cloud keeps (acs:, aliyun)")
        if value.startswith(RESERVED_TAG_VALUE_PREFIXES):
            raise ValueError(f"the value of tag {key!r} starts with acs:, which the cloud keeps")
        for text in (key, value):
            if "http://" in text or "https://" in text:
                raise ValueError(f"tag {key!r} contains http:// or https://")
    return tags


Tags = Annotated[dict[str, str], AfterValidator(_check_tags)]

# CreateContainerGroupRequestContainerEnvironmentVar: "The name ... must be 1 to 128 [characters]
# in length and can contain letters, digits, and underscores (_). It cannot start with a
# digit." "The value ... can be up to 256 characters in length."
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
MAX_ENV_VALUE = 256


def _check_env(env: dict[str, str]) -> dict[str, str]:
    for name, value in env.items():
        if not name:
            raise ValueError("an environment variable name cannot be empty")
        if not ENV_NAME.fullmatch(name):
            raise ValueError(
                f"environment variable name {name[:80]!r} is not 1 to 128 letters, digits and "
                "underscores, not starting with a digit"
            )
        if len(value) > MAX_ENV_VALUE:
            raise ValueError(
                f"the value of environment variable {name} is longer than {MAX_ENV_VALUE} "
                "characters"
            )
    return env


Env = Annotated[dict[str, str], AfterValidator(_check_env)]


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
        return registry_server(server)


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
    size_gib: Annotated[int, NUMBER] = Field(default=DEFAULT_MANUAL_SIZE_GIB, ge=1, le=2048)
    retention_days: Annotated[int, NUMBER] | None = Field(default=None, ge=1, le=3650)
    eviction: EvictionStrategy = EvictionStrategy.NEVER
    instant: bool = False
    instant_copies: Annotated[int, NUMBER] = Field(default=1, ge=1, le=5)
    layer_reuse: bool = False
    credentials: list[RegistryCredential] = Field(default_factory=list)
    insecure_registries: list[str] = Field(default_factory=list)
    plain_http_registries: list[str] = Field(default_factory=list)
    # Cloud placement: where the temporary instance that builds the cache runs.
    vswitch_id: VSwitchIds | None = None
    security_group_id: SecurityGroupId | None = None
    eip_instance_id: EipId | None = None
    tags: Tags = Field(default_factory=dict)
    # Cloud only: where the cache lives and how many regular snapshot copies it keeps.
    resource_group_id: ResourceGroupId | None = None
    zone_id: str | None = None
    standard_copies: Annotated[int, NUMBER] | None = Field(default=None, ge=1, le=10)
    acr_registries: list[AcrRegistry] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _not_automatic(cls, name: str) -> str:
        # The vendor's document: the system names automatic caches auto-create-for-<instance id>.
        if name.startswith(AUTO_CACHE_PREFIX):
            raise ValueError(
                f"names starting with {AUTO_CACHE_PREFIX!r} are for the caches ECI creates "
                "automatically"
            )
        return name

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
                raise InvalidProperty(
                    "credentials",
                    f"registry {cred.server!r} is not used by any image "
                    f"(images use {', '.join(sorted(registries))})",
                )
        return self


class CacheAdoption(BaseModel):
    """An existing cache an ``ImageCache`` resource takes over instead of creating one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    adopt_id: CacheId


class ContainerSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=128, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
    image: ImageRef
    image_pull_policy: str = Field(default="IfNotPresent", pattern=r"^(Always|IfNotPresent|Never)$")
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    env: Env = Field(default_factory=dict)
    ports: list[Port] = Field(default_factory=list)
    cpu: Annotated[float, NUMBER] | None = Field(default=None, gt=0, le=64)
    memory_gib: Annotated[float, NUMBER] | None = Field(default=None, gt=0, le=512)
    working_dir: str | None = Field(default=None, pattern=r"^/")

    @model_validator(mode="before")
    @classmethod
    def _unset_is_default(cls, value: object) -> object:
        """A field given as null takes its default (Pulumi sends unset optional inputs so)."""
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if v is not None}
        return value

    @field_validator("image", mode="before")
    @classmethod
    def _image(cls, value: object) -> ImageRef:
        return value if isinstance(value, ImageRef) else parse_image_ref(value)  # type: ignore[arg-type]


class CacheSelection(StrEnum):
    NONE = "none"
    AUTO_MATCH = "auto"  # match only
    AUTO_CREATE = "auto-create"  # match, and create a cache on a miss
    EXPLICIT = "explicit"


def _json_kind(value: object) -> str:
    """What a JSON value is, for a message: a string is shown (shortened)."""
    if isinstance(value, str):
        return repr(value[:80])
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a list" if isinstance(value, list | tuple) else f"a {type(value).__name__}"


class ContainerGroupSpec(BaseModel):
    """What matching needs of a container group: its images, storage and cache choice."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    containers: list[ContainerSpec] = Field(min_length=1)
    init_containers: list[ContainerSpec] = Field(default_factory=list)
    extra_ephemeral_storage_gib: Annotated[int, NUMBER] = Field(default=0, ge=0, le=2048)
    cache: CacheSelection = CacheSelection.AUTO_CREATE
    cache_id: CacheId | None = None
    cpu: Annotated[float, NUMBER] | None = Field(default=None, gt=0, le=64)
    memory_gib: Annotated[float, NUMBER] | None = Field(default=None, gt=0, le=512)
    restart_policy: str = Field(default="Always", pattern=r"^(Always|OnFailure|Never)$")
    # Local backend only (ECI's API has no such parameter): processes and threads of the whole
    # group; None is podman's default (containers.conf ``pids_limit = 2048``). At most the
    # kernel's PID_MAX_LIMIT (4194304 on 64-bit machines).
    pids_limit: Annotated[int, NUMBER] | None = Field(default=None, ge=1, le=4_194_304)
    credentials: list[RegistryCredential] = Field(default_factory=list)
    insecure_registries: list[str] = Field(default_factory=list)
    plain_http_registries: list[str] = Field(default_factory=list)
    vswitch_id: VSwitchIds | None = None
    security_group_id: SecurityGroupId | None = None
    tags: Tags = Field(default_factory=dict)
    # Cloud only: public network access (an existing EIP, or one created with the group),
    # placement, and ACR Enterprise instances pulled from without a password.
    eip_instance_id: EipId | None = None
    auto_create_eip: bool = False
    eip_bandwidth_mbps: Annotated[int, NUMBER] | None = Field(default=None, ge=1, le=200)
    resource_group_id: ResourceGroupId | None = None
    zone_id: str | None = None
    acr_registries: list[AcrRegistry] = Field(default_factory=list)

    @field_validator("containers", "init_containers", mode="before")
    @classmethod
    def _objects(cls, value: object) -> object:
        """Say what a container is when something else stands in the list (a bare image)."""
        if isinstance(value, list | tuple):
            for n, item in enumerate(value):
                if not isinstance(item, dict | ContainerSpec):
                    raise ValueError(
                        f"item {n} is {_json_kind(item)}, not a container (an object with at "
                        "least a name and an image)"
                    )
        return value

    @model_validator(mode="after")
    def _one_eip(self) -> ContainerGroupSpec:
        if self.eip_instance_id and self.auto_create_eip:
            raise InvalidProperty(
                "auto_create_eip", "not with eip_instance_id (the group has that one)"
            )
        if self.eip_bandwidth_mbps is not None and not self.auto_create_eip:
            raise InvalidProperty(
                "eip_bandwidth_mbps", "only for an EIP created with auto_create_eip"
            )
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
            raise InvalidProperty("cache_id", "an explicit cache selection needs a cache id")
        if self.cache != CacheSelection.EXPLICIT and self.cache_id:
            raise InvalidProperty("cache_id", "only allowed when the cache selection is explicit")
        return self

    @model_validator(mode="after")
    def _container_names_differ(self) -> ContainerGroupSpec:
        # A container is known by its name within its group (DescribeContainerGroups,
        # ExecContainerCommand's ContainerName), init containers included.
        seen: dict[str, str] = {}
        for kind in ("init_containers", "containers"):
            for n, container in enumerate(getattr(self, kind)):
                where = f"{kind}[{n}]"
                if container.name in seen:
                    raise InvalidProperty(
                        f"{where}.name",
                        f"{container.name!r} is already the name of {seen[container.name]}; "
                        "the containers of a group need their own names",
                    )
                seen[container.name] = where
        return self

    @property
    def images(self) -> list[ImageRef]:
        return unique_images([c.image for c in [*self.init_containers, *self.containers]])

    @property
    def unused_credentials(self) -> list[str]:
        """Servers of credentials no image of the group is pulled from (a warning, not an
        error: a component may hand the same credentials to all its groups)."""
        registries = {ref.registry for ref in self.images}
        return sorted({c.server for c in self.credentials} - registries)

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

    def declaration(self) -> dict[str, Any]:
        """The fields set to other than their defaults, images as references, without the
        credentials (no password is kept): what a backend records so that the group can be
        read back as declared (``pulumi import``)."""
        data = self.model_dump(mode="json", exclude_defaults=True, exclude={"credentials"})
        for key in ("containers", "init_containers"):
            for item, container in zip(data.get(key, []), getattr(self, key), strict=True):
                item["image"] = str(container.image)
        return data


def request_digest(spec: ImageCacheSpec | ContainerGroupSpec) -> str:
    """What a create asks for, as a sha256 hex digest: the same spec, the same digest. No
    secret enters it: credentials count by server and user, so a rotated password asks for
    the same cache or group. A field added since digests were first kept (``pids_limit``)
    is left out while unset, so that a kept digest still matches its request."""
    data = spec.model_dump(mode="json", exclude={"credentials"})
    if data.get("pids_limit", 0) is None:
        del data["pids_limit"]
    data["credentials"] = sorted([c.server, c.username] for c in spec.credentials)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


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


def invalid_properties(exc: ValidationError) -> list[InvalidProperty]:
    """Each problem of a pydantic error as the property it is in, where within it, and what.

    The place is pydantic's location; a validator that knows more precisely where the problem
    is raises :class:`InvalidProperty` with the place (``cache_id``, ``containers[1].name``),
    which goes on from the location it was raised at."""
    problems = []
    for error in exc.errors():
        location = error["loc"]
        path = path_of(location)
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, InvalidProperty):
            path = f"{path}.{cause.path}" if path else cause.path
            message = cause.message
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
        top = str(location[0]) if location else None
        problems.append(InvalidProperty(path, message, property=top))
    return problems


def validation_failures(exc: ValidationError) -> list[tuple[str, str]]:
    """(property, reason) pairs from a pydantic error, for ``check`` to report.

    The property is the input's top-level name (what Pulumi shows the value of); a reason
    within it starts with where: ``("containers", "containers[0].ports[0]: Input should be
    less than or equal to 65535")``."""
    return [(problem.property, problem.reason) for problem in invalid_properties(exc)]


def failure_text(failures: list[tuple[str, str]]) -> str:
    """The failures on one line, each as ``property: reason`` (once, when the reason names a
    place within the property already)."""
    return "; ".join(
        reason if reason.startswith((f"{prop}.", f"{prop}[")) else f"{prop}: {reason}"
        for prop, reason in failures
    )


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
    # What it was created with (the spec's fields set to other than their defaults, without
    # credentials), where the backend keeps it: ``pulumi import`` declares the group from it.
    declared: dict[str, Any] | None = None
