"""Image caches and container groups on Alibaba Cloud ECI through the official SDK.

- Credentials come from the standard Alibaba Cloud credential chain (environment variables,
  the CLI profile, instance roles), never from Pulumi state or our arguments.
- Requests are built from the SDK's request models only (a misspelt field is a TypeError) and
  carry only documented fields within documented limits (tests/conformance checks both).
- Every create carries a ClientToken: the caller's, or one derived from the spec, so a retry
  after a lost answer and a re-run of the same deploy get the first cache or group back.
  Throttling and network failures are retried (the project's one retry policy, ``retry.py``)
  with the same request, hence the same token.
- Long operations are waited for by polling DescribeImageCaches / DescribeContainerGroups
  until the cache shows what was asked (never the record from before an update) and is usable
  or failed, and until the group runs, within a timeout the caller sets.
- Which cache a group used comes from its documented image-cache events
  (DescribeContainerGroupEvents: SuccessfulHitImageCache / ImageCacheAutoCreated).
- API errors become :class:`BackendError` messages that say what to do; passwords never.
- An endpoint override (``http://127.0.0.1:PORT``) points the SDK at the emulator.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from ...engine.matcher import CacheIndex, MatchResult
from ...engine.models import (
    CacheEvent,
    CacheRecord,
    CacheSelection,
    CacheStatus,
    ContainerGroupRecord,
    ContainerGroupSpec,
    GroupStatus,
    ImageCacheSpec,
    Quota,
    request_digest,
)
from ...engine.planner import BuildPlan, PlanError, plan_build
from ...registry.client import Credentials, RegistryClient, RegistryError
from ...retry import RetryPolicy
from ..base import (
    BackendError,
    GcReport,
    InvalidSpec,
    NotFound,
    Progress,
    QuotaExceeded,
    Usage,
    from_registry,
)
from . import reading

T = TypeVar("T")
THROTTLED = ("Throttling", "Throttling.User", "Throttling.Api", "ServiceUnavailable")
# DescribeContainerGroups: at most 20 per page and 20 ids per ContainerGroupIds (the reference);
# DescribeContainerGroupEvents takes up to 20 ids too. Image caches use the same page size.
PAGE_SIZE = 20
MAX_IDS = 20
# DescribeImageCaches.MatchImage: "a maximum of 100 container images" (the SDK's docstring).
MAX_MATCH_IMAGES = 100
# How long an operation is waited for unless the caller says (eci:operationTimeout's default).
DEFAULT_TIMEOUT = 1800.0
# ClientToken: ASCII, at most 64 characters (the reference).
TOKEN_LENGTH = 64
# What users can do about the errors they are most likely to meet.
ADVICE = {
    "InvalidAccessKeyId.NotFound": "check ALIBABA_CLOUD_ACCESS_KEY_ID",
    "SignatureDoesNotMatch": "check ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    "IncompleteSignature": "check the access key pair",
    "Forbidden.RAM": "grant the RAM user the ECI permissions",
    "QuotaExceeded.ImageCache": "delete a cache, set eviction to LRU on one, or ask for more quota",
}


_PASSWORD = re.compile(r"(Password=)[^&\s\"']*", re.IGNORECASE)


def redact(text: str) -> str:
    """The SDK sends registry passwords in the query string: cut them out of any text."""
    return _PASSWORD.sub(r"\1***", text)


class _RedactPasswords(logging.Filter):
    """urllib3 logs request lines at DEBUG: keep passwords out of every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "assword=" in message:
            record.msg, record.args = redact(message), None
        return True


_REDACT = _RedactPasswords()
for _name in ("urllib3.connectionpool", "urllib3", "requests", "darabonba", "Tea"):
    logging.getLogger(_name).addFilter(_REDACT)


def derive_token(action: str, *parts: Any) -> str:
    """A ClientToken from what identifies the operation: the same inputs, the same token.
    No password enters it (see ``request_digest``); it is ASCII and within the documented
    length."""
    text = json.dumps([action, *parts], sort_keys=True, default=str)
    return f"eci-imagecache-{hashlib.sha256(text.encode()).hexdigest()}"[:TOKEN_LENGTH]


class AliCloudBackend:
    def __init__(
        self,
        region: str,
        endpoint: str | None = None,
        credential: Any = None,
        timeout: float | None = None,
        poll_interval: float = 5.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        client_class: type | None = None,
    ) -> None:
        """``timeout``: how long an operation is waited for (default ``DEFAULT_TIMEOUT``);
        ``client_class``: the SDK client or a subclass of it (e.g. one that records calls)."""
        from alibabacloud_credentials.client import Client as CredentialClient
        from alibabacloud_eci20180808 import models
        from alibabacloud_eci20180808.client import Client
        from alibabacloud_tea_openapi import models as openapi

        self.region = region
        self.timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        self.poll_interval = poll_interval
        self.retry = retry or RetryPolicy()
        self.sleep = sleep  # between polls
        self.models = models
        config = openapi.Config(credential=credential or CredentialClient(), region_id=region)
        if endpoint:
            scheme, _, host = endpoint.rpartition("://")
            config.endpoint = host
            config.protocol = scheme or "https"
        else:
            config.endpoint = f"eci.{region}.aliyuncs.com"
        config.read_timeout = 60_000
        config.connect_timeout = 10_000
        self.client = (client_class or Client)(config)

    # calls --------------------------------------------------------------------------------

    def _call(self, what: str, method: str, request: Any) -> Any:
        """One API call under the project's retry policy: throttling and network failures are
        tried again with the same request (so the same ClientToken); errors are made
        actionable."""
        from darabonba.exceptions import DaraException
        from Tea.exceptions import TeaException, UnretryableException

        def worth_retrying(err: Exception) -> bool:
            if isinstance(err, UnretryableException):
                return True  # a transport failure: the request may or may not have arrived
            if isinstance(err, (DaraException, TeaException)):
                return str(getattr(err, "code", "") or "") in THROTTLED
            return False

        try:
            return self.retry.call(
                worth_retrying, lambda: getattr(self.client, method)(request).body
            )
        except UnretryableException:
            # Its text holds the request URL, and with it any registry password: none of it kept.
            raise BackendError(
                f"{what}: the ECI API could not be reached ({self.retry.attempts} attempts)"
            ) from None
        except (DaraException, TeaException) as err:
            raise self._translate(what, str(getattr(err, "code", "") or ""), err) from None

    @staticmethod
    def _translate(what: str, code: str, err: Any) -> BackendError:
        data = getattr(err, "data", None) or {}
        message = data.get("Message") if isinstance(data, dict) else None
        message = message or str(getattr(err, "message", "") or code)
        advice = ADVICE.get(code)
        text = redact(f"{what}: {code}: {message}" + (f" ({advice})" if advice else ""))
        if code.endswith("NotFound") and "AccessKey" not in code:
            return NotFound(text, code=code)
        if code.startswith("QuotaExceeded"):
            return QuotaExceeded(text, code=code)
        return BackendError(text, code=code)

    def _wait(self, what: str, fetch: Callable[[], T], done: Callable[[T], bool]) -> T:
        deadline = time.monotonic() + self.timeout
        while True:
            value = fetch()
            if done(value):
                return value
            if time.monotonic() >= deadline:
                raise BackendError(
                    f"{what}: not finished after {self.timeout:.0f} s; it goes on "
                    "in the cloud: bring it under management with adopt_id once it is ready, "
                    "or raise eci:operationTimeout"
                )
            self.sleep(self.poll_interval)

    def _pages(
        self, what: str, method: str, request: type, field: str, **filters: Any
    ) -> list[dict[str, Any]]:
        """Every item of a paged Describe call, following NextToken."""
        items, token = [], None
        while True:
            body = self._call(
                what,
                method,
                request(region_id=self.region, limit=PAGE_SIZE, next_token=token, **filters),
            )
            items += [item.to_map() for item in getattr(body, field) or []]
            token = body.next_token
            if not token:
                return items

    # image caches -------------------------------------------------------------------------

    def _acr(self, cls: Any, spec: ImageCacheSpec | ContainerGroupSpec) -> list[Any] | None:
        return [
            cls(
                instance_id=r.instance_id,
                instance_name=r.instance_name,
                region_id=r.region_id,
                domain=r.domains or None,
            )
            for r in spec.acr_registries
        ] or None

    def _credentials(self, cls: Any, spec: ImageCacheSpec | ContainerGroupSpec) -> list[Any] | None:
        return [
            cls(server=c.server, user_name=c.username, password=c.password.get_secret_value())
            for c in spec.credentials
        ] or None

    def _cache_fields(self, cls: Any, spec: ImageCacheSpec) -> dict[str, Any]:
        """Every field of a cache request that the spec sets (Create sends all of them)."""
        m, prefix = self.models, cls.__name__
        return {
            "image_cache_name": spec.name,
            "image": [str(i) for i in spec.images],
            "image_cache_size": spec.size_gib,
            "retention_days": spec.retention_days,
            "elimination_strategy": spec.eviction.value or None,
            "flash": spec.instant,
            "flash_copy_count": spec.instant_copies if spec.instant else None,
            "standard_copy_count": spec.standard_copies,
            "auto_match_image_cache": spec.layer_reuse,
            "image_registry_credential": self._credentials(
                getattr(m, f"{prefix}ImageRegistryCredential"), spec
            ),
            "acr_registry_info": self._acr(getattr(m, f"{prefix}AcrRegistryInfo"), spec),
            "v_switch_id": spec.vswitch_id,
            "security_group_id": spec.security_group_id,
            "eip_instance_id": spec.eip_instance_id,
            "resource_group_id": spec.resource_group_id,
            "tag": [
                getattr(m, f"{prefix}Tag")(key=k, value=v) for k, v in sorted(spec.tags.items())
            ]
            or None,
        }

    def _describe_caches(self, what: str, **filters: Any) -> list[dict[str, Any]]:
        return self._pages(
            what,
            "describe_image_caches",
            self.models.DescribeImageCachesRequest,
            "image_caches",
            **filters,
        )

    def _get(self, cache_id: str) -> dict[str, Any]:
        found = [
            i
            for i in self._describe_caches(f"image cache {cache_id}", image_cache_id=cache_id)
            if i.get("ImageCacheId") == cache_id
        ]
        if not found:
            raise NotFound(f"image cache {cache_id} not found in {self.region}")
        return found[0]

    def _read(self, item: dict[str, Any]) -> CacheRecord:
        try:
            return reading.cache_record(item, self.region)
        except (reading.Unreadable, ValueError, TypeError) as err:
            raise BackendError(
                f"image cache {item.get('ImageCacheId')}: the API's answer could not be read "
                f"({type(err).__name__})"
            ) from None

    def _wait_for(
        self, cache_id: str, name: str, shows: Callable[[CacheRecord], bool]
    ) -> CacheRecord:
        """Poll until the cache shows what was asked and is usable, or it failed."""
        what = f"image cache {name} ({cache_id})"
        failed = (CacheStatus.FAILED, CacheStatus.UPDATE_FAILED)
        record = self._wait(
            what,
            lambda: self._read(self._get(cache_id)),
            lambda r: (
                r.status in failed or (shows(r) and r.usable and r.status != CacheStatus.UPDATING)
            ),
        )
        if record.status in failed:
            raise BackendError(f"{what} failed: {record.failure}")
        return record

    def create_image_cache(
        self,
        spec: ImageCacheSpec,
        *,
        client_token: str | None = None,
        progress: Progress | None = None,
        wait: bool = True,
    ) -> CacheRecord:
        """``progress`` is not reported: the cloud builds the cache, its bytes are not ours
        to count."""
        token = client_token or derive_token("CreateImageCache", self.region, request_digest(spec))
        request = self.models.CreateImageCacheRequest(
            region_id=self.region,
            client_token=token[:TOKEN_LENGTH],
            zone_id=spec.zone_id,
            insecure_registry=",".join(spec.insecure_registries) or None,
            plain_http_registry=",".join(spec.plain_http_registries) or None,
            **self._cache_fields(self.models.CreateImageCacheRequest, spec),
        )
        body = self._call(f"image cache {spec.name}", "create_image_cache", request)
        if not wait:
            return self._read(self._get(body.image_cache_id))
        return self._wait_for(body.image_cache_id, spec.name, lambda r: True)

    def get_image_cache(self, cache_id: str) -> CacheRecord:
        return self._read(self._get(cache_id))

    def list_image_caches(self) -> list[CacheRecord]:
        return reading.cache_records(self._describe_caches("image caches"), self.region)

    def events(self, cache_id: str) -> list[CacheEvent]:
        return reading.cache_events(self._get(cache_id))

    @staticmethod
    def _shows(record: CacheRecord, spec: ImageCacheSpec) -> bool:
        """The cache reports what the spec asks (as far as the API reports it)."""
        return (
            record.name == spec.name
            and sorted(map(str, record.images)) == sorted(map(str, spec.images))
            and record.size_gib == spec.size_gib
            and record.eviction == spec.eviction
            and (record.kind != "manual" or record.retention_days == spec.retention_days)
            and (record.tags is None or record.tags == spec.tags)
        )

    def _changes(self, current: CacheRecord, spec: ImageCacheSpec) -> dict[str, Any]:
        """UpdateImageCache's fields: those DescribeImageCaches reports and that differ, and,
        when the update rebuilds (images or size changed), every setting the build uses. The
        build settings are not reported back, so they cannot be compared; alone they would
        change nothing the cache holds, and the next rebuild sends them anyway."""
        fields = self._cache_fields(self.models.UpdateImageCacheRequest, spec)
        same = {
            "image_cache_name": current.name == spec.name,
            "image": sorted(map(str, current.images)) == sorted(map(str, spec.images)),
            "image_cache_size": current.size_gib == spec.size_gib,
            "retention_days": current.retention_days == spec.retention_days,
            "elimination_strategy": current.eviction == spec.eviction,
            "tag": current.tags is not None and current.tags == spec.tags,
            "resource_group_id": spec.resource_group_id in (None, current.resource_group_id),
        }
        rebuild = not (same["image"] and same["image_cache_size"])
        changes = {
            k: v
            for k, v in fields.items()
            if v is not None and (not same[k] if k in same else rebuild)
        }
        if not same["elimination_strategy"]:
            # "" is the documented value for "never evicted": sent, so LRU can be turned off.
            changes["elimination_strategy"] = spec.eviction.value
        removed = sorted(set(current.tags or {}) - set(spec.tags))
        if removed:
            raise BackendError(
                f"tags: UpdateImageCache adds tags and cannot remove {', '.join(removed)}; "
                "remove them in the console or replace the cache"
            )
        return changes

    def update_image_cache(
        self,
        cache_id: str,
        spec: ImageCacheSpec,
        *,
        client_token: str | None = None,
        wait: bool = True,
    ) -> CacheRecord:
        current = self.get_image_cache(cache_id)
        if current.retention_days is not None and spec.retention_days is None:
            raise BackendError(
                f"retention_days: image cache {cache_id} expires after "
                f"{current.retention_days} days; UpdateImageCache has no value for 'never', "
                "so clearing it replaces the cache"
            )
        changes = self._changes(current, spec)
        if changes:
            token = client_token or derive_token(
                "UpdateImageCache", self.region, cache_id, request_digest(spec)
            )
            request = self.models.UpdateImageCacheRequest(
                region_id=self.region,
                image_cache_id=cache_id,
                client_token=token[:TOKEN_LENGTH],
                **changes,
            )
            self._call(f"image cache {spec.name}", "update_image_cache", request)
        if not wait:
            return self.get_image_cache(cache_id)
        return self._wait_for(cache_id, spec.name, lambda r: self._shows(r, spec))

    def delete_image_cache(self, cache_id: str) -> None:
        self._call(
            f"image cache {cache_id}",
            "delete_image_cache",
            self.models.DeleteImageCacheRequest(
                region_id=self.region,
                image_cache_id=cache_id,
                client_token=derive_token("DeleteImageCache", self.region, cache_id),
            ),
        )

    def plan_image_cache(self, spec: ImageCacheSpec) -> BuildPlan:
        """What the build will pull (the cloud does not say which layers it would reuse)."""
        credentials = {c.server: Credentials(c.username, c.password) for c in spec.credentials}
        with RegistryClient(
            credentials=credentials,
            plain_http=set(spec.plain_http_registries),
            insecure=set(spec.insecure_registries),
        ) as client:
            try:
                images = [client.resolve(ref) for ref in spec.images]
            except RegistryError as err:
                raise from_registry(f"image cache {spec.name}", err) from err
        try:
            return plan_build(images, spec.size_gib)
        except PlanError as err:
            raise InvalidSpec(f"image cache {spec.name}: {err}", problem=err) from None

    # matching and container groups --------------------------------------------------------

    def match(self, spec: ContainerGroupSpec) -> MatchResult:
        """Rank the caches the API finds for these images (MatchImage narrows the listing; it
        takes at most 100 images, so a group with more lists every cache)."""
        images = [str(i) for i in spec.images]
        narrowed = {"match_image": images} if len(images) <= MAX_MATCH_IMAGES else {}
        items = self._describe_caches("image caches", **narrowed)
        index = CacheIndex(reading.cache_records(items, self.region))
        return index.match(spec.images, self.region, spec.ephemeral_storage_gib)

    def _container(self, cls: Any, c: Any) -> Any:
        m = self.models
        prefix = cls.__name__
        return cls(
            name=c.name,
            image=str(c.image),
            image_pull_policy=c.image_pull_policy,
            command=c.command or None,
            arg=c.args or None,
            cpu=c.cpu,
            memory=c.memory_gib,
            environment_var=[
                getattr(m, f"{prefix}EnvironmentVar")(key=k, value=v) for k, v in c.env.items()
            ]
            or None,
            port=[getattr(m, f"{prefix}Port")(port=p, protocol="TCP") for p in c.ports] or None,
        )

    def create_container_group(
        self, spec: ContainerGroupSpec, *, client_token: str | None = None
    ) -> ContainerGroupRecord:
        m = self.models
        cache_id, auto_match, decided = None, None, None
        if spec.cache == CacheSelection.EXPLICIT:
            try:
                cache = self.get_image_cache(spec.cache_id or "")
            except NotFound:
                raise BackendError(
                    f"cache_id: image cache {spec.cache_id} does not exist"
                ) from None
            if not cache.usable:
                raise BackendError(
                    f"cache_id: image cache {cache.id} is not usable ({cache.status.value})"
                )
            cache_id = cache.id
        elif spec.cache == CacheSelection.AUTO_MATCH:
            decided = self.match(spec).chosen  # resolved here, named by ImageSnapshotId
            cache_id = decided.cache_id if decided else None
        elif spec.cache == CacheSelection.AUTO_CREATE:
            auto_match = True
        token = client_token or derive_token(
            "CreateContainerGroup", self.region, request_digest(spec)
        )
        request = m.CreateContainerGroupRequest(
            region_id=self.region,
            zone_id=spec.zone_id,
            resource_group_id=spec.resource_group_id,
            container_group_name=spec.name,
            container=[
                self._container(m.CreateContainerGroupRequestContainer, c) for c in spec.containers
            ],
            init_container=[
                self._container(m.CreateContainerGroupRequestInitContainer, c)
                for c in spec.init_containers
            ]
            or None,
            cpu=spec.cpu,
            memory=spec.memory_gib,
            restart_policy=spec.restart_policy,
            ephemeral_storage=spec.extra_ephemeral_storage_gib or None,
            # The reference: "The ID of the image cache" (imc-...), not a snapshot id.
            image_snapshot_id=cache_id,
            auto_match_image_cache=auto_match,
            image_registry_credential=self._credentials(
                m.CreateContainerGroupRequestImageRegistryCredential, spec
            ),
            acr_registry_info=self._acr(m.CreateContainerGroupRequestAcrRegistryInfo, spec),
            insecure_registry=",".join(spec.insecure_registries) or None,
            plain_http_registry=",".join(spec.plain_http_registries) or None,
            v_switch_id=spec.vswitch_id,
            security_group_id=spec.security_group_id,
            eip_instance_id=spec.eip_instance_id,
            auto_create_eip=spec.auto_create_eip or None,
            eip_bandwidth=spec.eip_bandwidth_mbps,
            tag=[
                m.CreateContainerGroupRequestTag(key=k, value=v)
                for k, v in sorted(spec.tags.items())
            ]
            or None,
            client_token=token[:TOKEN_LENGTH],
        )
        body = self._call(f"container group {spec.name}", "create_container_group", request)
        record = self._wait(
            f"container group {spec.name}",
            lambda: self.get_container_group(body.container_group_id),
            lambda g: g.status != GroupStatus.PENDING,
        )
        # A group that ran and failed (a job's non-zero exit, an image with nothing to run) is
        # a result read from its status, as on the local backend, not an error of the create.
        update: dict[str, Any] = {}
        if decided is not None:
            update = {
                "cache_id": decided.cache_id,
                "match_degree": decided.degree.label,
                "match_reason": decided.reason,
                "cache_name": decided.name,
            }
        elif record.cache_id:
            try:
                used = self.get_image_cache(record.cache_id)
            except NotFound:
                used = None
            if used is not None:
                update = {
                    "cache_name": used.name,
                    "match_degree": reading.match_degree(used, record),
                }
        return record.model_copy(update=update) if update else record

    def _describe_groups(self, what: str, **filters: Any) -> list[dict[str, Any]]:
        return self._pages(
            what,
            "describe_container_groups",
            self.models.DescribeContainerGroupsRequest,
            "container_groups",
            **filters,
        )

    def _group_events(self, group_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The groups' events (DescribeContainerGroupEvents, up to 20 ids a call)."""
        events: dict[str, list[dict[str, Any]]] = {}
        for start in range(0, len(group_ids), MAX_IDS):
            # The answer has no NextToken: one call covers the ids it names.
            body = self._call(
                "container group events",
                "describe_container_group_events",
                self.models.DescribeContainerGroupEventsRequest(
                    region_id=self.region,
                    container_group_ids=json.dumps(group_ids[start : start + MAX_IDS]),
                ),
            )
            for data in body.data or []:
                events.setdefault(data.container_group_id, []).extend(
                    e.to_map() for e in data.events or []
                )
        return events

    def _groups(self, items: list[dict[str, Any]]) -> list[ContainerGroupRecord]:
        events = self._group_events([str(i.get("ContainerGroupId")) for i in items])
        records = []
        for item in items:
            group_id = str(item.get("ContainerGroupId"))
            item = {**item, "Events": [*(item.get("Events") or []), *events.get(group_id, [])]}
            try:
                records.append(reading.group_record(item, self.region))
            except (reading.Unreadable, ValueError, TypeError) as err:
                reading.log.warning(
                    "container group %s skipped: %s", group_id[:64], type(err).__name__
                )
        return records

    def get_container_group(self, group_id: str) -> ContainerGroupRecord:
        found = self._groups(
            [
                g
                for g in self._describe_groups(
                    f"container group {group_id}", container_group_ids=json.dumps([group_id])
                )
                if g.get("ContainerGroupId") == group_id
            ]
        )
        if not found:
            raise NotFound(f"container group {group_id} not found in {self.region}")
        return found[0]

    def list_container_groups(self) -> list[ContainerGroupRecord]:
        return self._groups(self._describe_groups("container groups"))

    def delete_container_group(self, group_id: str) -> None:
        self._call(
            f"container group {group_id}",
            "delete_container_group",
            self.models.DeleteContainerGroupRequest(
                region_id=self.region,
                container_group_id=group_id,
                client_token=derive_token("DeleteContainerGroup", self.region, group_id),
            ),
        )

    # quota --------------------------------------------------------------------------------

    def usage(self) -> Usage:
        body = self._call(
            "usage", "list_usage", self.models.ListUsageRequest(region_id=self.region)
        )
        counts = reading.usage_counts(body.attributes or {})
        return Usage(
            quota=Quota(max_manual=counts["max_manual"], max_auto=counts["max_auto"]),
            manual=counts["manual"],
            auto=counts["auto"],
        )

    def gc(self, dry_run: bool = False, grace: timedelta = timedelta(minutes=10)) -> GcReport:
        raise BackendError("gc: Alibaba Cloud applies retention and automatic expiry itself")
