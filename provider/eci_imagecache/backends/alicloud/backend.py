"""Image caches and container groups on Alibaba Cloud ECI through the official SDK.

- Credentials come from the standard Alibaba Cloud credential chain (environment variables,
  the CLI profile, instance roles), never from Pulumi state or our arguments.
- Long operations are waited for by polling DescribeImageCaches / DescribeContainerGroups until
  the cache is usable (or failed) and the group running, within a timeout the caller sets.
- Every mutating call carries a ClientToken, reused when it is retried, so a retry never makes a
  second cache or group; throttling is retried with exponential backoff.
- API errors become :class:`BackendError` messages that say what to do.
- An endpoint override (``http://127.0.0.1:PORT``) points the SDK at the emulator.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
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
)
from ...engine.planner import BuildPlan, plan_build
from ...registry.client import Credentials, RegistryClient, RegistryError
from ..base import BackendError, NotFound, QuotaExceeded, Usage, from_registry
from ..eci_api import cache_events_from_api, cache_from_api, group_from_api

T = TypeVar("T")
THROTTLED = ("Throttling", "Throttling.User", "Throttling.Api", "ServiceUnavailable")
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


class AliCloudBackend:
    def __init__(
        self,
        region: str,
        endpoint: str | None = None,
        credential: Any = None,
        timeout: float = 1800.0,
        poll_interval: float = 5.0,
        retries: int = 5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from alibabacloud_credentials.client import Client as CredentialClient
        from alibabacloud_eci20180808 import models
        from alibabacloud_eci20180808.client import Client
        from alibabacloud_tea_openapi import models as openapi

        self.region = region
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.retries = retries
        self.sleep = sleep
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
        self.client = Client(config)

    # calls --------------------------------------------------------------------------------

    def _call(self, what: str, method: str, request: Any) -> Any:
        """One API call: throttling retried with backoff, errors made actionable."""
        from darabonba.exceptions import DaraException
        from Tea.exceptions import TeaException, UnretryableException

        for attempt in range(self.retries + 1):
            try:
                return getattr(self.client, method)(request).body
            except UnretryableException:
                # A transport failure: its text holds the request URL, and with it any
                # registry password, so none of it goes into the message.
                raise BackendError(f"{what}: the ECI API could not be reached") from None
            except (DaraException, TeaException) as err:
                code = str(getattr(err, "code", "") or "")
                if code in THROTTLED and attempt < self.retries:
                    self.sleep(min(30.0, 0.5 * 2**attempt))
                    continue
                raise self._translate(what, code, err) from None
        raise AssertionError("unreachable")

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

    # image caches -------------------------------------------------------------------------

    def _cache_request(self, cls: Any, spec: ImageCacheSpec, **extra: Any) -> Any:
        m = self.models
        credential_cls = getattr(m, f"{cls.__name__}ImageRegistryCredential")
        tag_cls = getattr(m, f"{cls.__name__}Tag")
        return cls(
            region_id=self.region,
            image_cache_name=spec.name,
            image=[str(i) for i in spec.images],
            image_cache_size=spec.size_gib,
            retention_days=spec.retention_days,
            elimination_strategy=spec.eviction.value or None,
            flash=spec.instant,
            flash_copy_count=spec.instant_copies if spec.instant else None,
            auto_match_image_cache=spec.layer_reuse,
            image_registry_credential=[
                credential_cls(
                    server=c.server, user_name=c.username, password=c.password.get_secret_value()
                )
                for c in spec.credentials
            ]
            or None,
            v_switch_id=spec.vswitch_id,
            security_group_id=spec.security_group_id,
            eip_instance_id=spec.eip_instance_id,
            tag=[tag_cls(key=k, value=v) for k, v in sorted(spec.tags.items())] or None,
            **extra,
        )

    def _pages(
        self, what: str, method: str, request: type, field: str, **filters: Any
    ) -> list[dict[str, Any]]:
        """Every item of a paged Describe call, following NextToken."""
        items, token = [], None
        while True:
            body = self._call(
                what, method, request(region_id=self.region, limit=100, next_token=token, **filters)
            )
            items += [item.to_map() for item in getattr(body, field) or []]
            token = body.next_token
            if not token:
                return items

    def _describe_caches(self, what: str, **filters: Any) -> list[dict[str, Any]]:
        return self._pages(
            what,
            "describe_image_caches",
            self.models.DescribeImageCachesRequest,
            "image_caches",
            **filters,
        )

    def _get(self, cache_id: str) -> dict[str, Any]:
        found = self._describe_caches(f"image cache {cache_id}", image_cache_id=cache_id)
        if not found:
            raise NotFound(f"image cache {cache_id} not found in {self.region}")
        return found[0]

    def _wait_usable(self, cache_id: str, name: str) -> CacheRecord:
        what = f"image cache {name} ({cache_id})"
        record = self._wait(
            what,
            lambda: cache_from_api(self._get(cache_id), self.region),
            lambda r: (
                (r.usable and r.status != CacheStatus.UPDATING) or r.status == CacheStatus.FAILED
            ),
        )
        if record.status == CacheStatus.FAILED:
            raise BackendError(f"{what} failed: {record.failure}")
        return record

    def create_image_cache(self, spec: ImageCacheSpec, **_: Any) -> CacheRecord:
        request = self._cache_request(
            self.models.CreateImageCacheRequest,
            spec,
            client_token=str(uuid.uuid4()),
            insecure_registry=",".join(spec.insecure_registries) or None,
            plain_http_registry=",".join(spec.plain_http_registries) or None,
        )
        body = self._call(f"image cache {spec.name}", "create_image_cache", request)
        return self._wait_usable(body.image_cache_id, spec.name)

    def get_image_cache(self, cache_id: str) -> CacheRecord:
        return cache_from_api(self._get(cache_id), self.region)

    def list_image_caches(self) -> list[CacheRecord]:
        return [cache_from_api(i, self.region) for i in self._describe_caches("image caches")]

    def events(self, cache_id: str) -> list[CacheEvent]:
        return cache_events_from_api(self._get(cache_id))

    def update_image_cache(self, cache_id: str, spec: ImageCacheSpec, **_: Any) -> CacheRecord:
        request = self._cache_request(
            self.models.UpdateImageCacheRequest,
            spec,
            image_cache_id=cache_id,
            client_token=str(uuid.uuid4()),
        )
        self._call(f"image cache {spec.name}", "update_image_cache", request)
        return self._wait_usable(cache_id, spec.name)

    def delete_image_cache(self, cache_id: str) -> None:
        self._call(
            f"image cache {cache_id}",
            "delete_image_cache",
            self.models.DeleteImageCacheRequest(
                region_id=self.region, image_cache_id=cache_id, client_token=str(uuid.uuid4())
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
        return plan_build(images, spec.size_gib)

    # matching and container groups --------------------------------------------------------

    def match(self, spec: ContainerGroupSpec) -> MatchResult:
        """Rank the caches the API finds for these images (MatchImage narrows the listing)."""
        items = self._describe_caches("image caches", match_image=[str(i) for i in spec.images])
        index = CacheIndex(cache_from_api(i, self.region) for i in items)
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

    def create_container_group(self, spec: ContainerGroupSpec) -> ContainerGroupRecord:
        m = self.models
        snapshot_id, auto_match, decided = None, None, None
        if spec.cache == CacheSelection.EXPLICIT:
            cache = self.get_image_cache(spec.cache_id or "")
            if not cache.usable:
                raise BackendError(
                    f"cache_id: image cache {cache.id} is not usable ({cache.status.value})"
                )
            snapshot_id = cache.snapshot_id
        elif spec.cache == CacheSelection.AUTO_MATCH:
            decided = self.match(spec).chosen  # resolved here, passed as ImageSnapshotId
            if decided is not None:
                snapshot_id = self.get_image_cache(decided.cache_id).snapshot_id
        elif spec.cache == CacheSelection.AUTO_CREATE:
            auto_match = True
        request = m.CreateContainerGroupRequest(
            region_id=self.region,
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
            image_snapshot_id=snapshot_id,
            auto_match_image_cache=auto_match,
            image_registry_credential=[
                m.CreateContainerGroupRequestImageRegistryCredential(
                    server=c.server, user_name=c.username, password=c.password.get_secret_value()
                )
                for c in spec.credentials
            ]
            or None,
            insecure_registry=",".join(spec.insecure_registries) or None,
            plain_http_registry=",".join(spec.plain_http_registries) or None,
            v_switch_id=spec.vswitch_id,
            security_group_id=spec.security_group_id,
            tag=[
                m.CreateContainerGroupRequestTag(key=k, value=v)
                for k, v in sorted(spec.tags.items())
            ]
            or None,
            client_token=str(uuid.uuid4()),
        )
        body = self._call(f"container group {spec.name}", "create_container_group", request)
        record = self._wait(
            f"container group {spec.name}",
            lambda: self.get_container_group(body.container_group_id),
            lambda g: g.status != GroupStatus.PENDING,
        )
        if record.status == GroupStatus.FAILED:
            raise BackendError(f"container group {spec.name} ({record.id}) failed")
        if decided is not None:
            record = record.model_copy(
                update={
                    "match_degree": decided.degree.label,
                    "match_reason": decided.reason,
                    "cache_name": decided.name,
                }
            )
        return record

    def _describe_groups(self, what: str, **filters: Any) -> list[dict[str, Any]]:
        return self._pages(
            what,
            "describe_container_groups",
            self.models.DescribeContainerGroupsRequest,
            "container_groups",
            **filters,
        )

    def get_container_group(self, group_id: str) -> ContainerGroupRecord:
        import json

        found = self._describe_groups(
            f"container group {group_id}", container_group_ids=json.dumps([group_id])
        )
        if not found:
            raise NotFound(f"container group {group_id} not found in {self.region}")
        return group_from_api(found[0], self.region)

    def list_container_groups(self) -> list[ContainerGroupRecord]:
        return [group_from_api(g, self.region) for g in self._describe_groups("container groups")]

    def delete_container_group(self, group_id: str) -> None:
        self._call(
            f"container group {group_id}",
            "delete_container_group",
            self.models.DeleteContainerGroupRequest(
                region_id=self.region, container_group_id=group_id, client_token=str(uuid.uuid4())
            ),
        )

    # quota --------------------------------------------------------------------------------

    def usage(self) -> Usage:
        body = self._call(
            "usage", "list_usage", self.models.ListUsageRequest(region_id=self.region)
        )
        attributes = body.attributes or {}
        return Usage(
            quota=Quota(
                max_manual=int(attributes.get("MaxImageCacheCount", 0)),
                max_auto=int(attributes.get("MaxAutoImageCacheCount", 0)),
            ),
            manual=int(attributes.get("ImageCacheCount", 0)),
            auto=int(attributes.get("AutoImageCacheCount", 0)),
        )

    def gc(self, dry_run: bool = False, **_: Any) -> Any:
        raise BackendError("gc: Alibaba Cloud applies retention and automatic expiry itself")
