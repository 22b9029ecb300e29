"""The ``ContainerGroup`` provider: the hooks behind the resource (``container_group``), run in
the provider process only. An ECI instance whose images come from a cache when one fits.

The cache is resolved once, when the group is created, and recorded (cache id, match degree, the
reason). A create waits, as pulumi-alicloud's does, until the group is Running or Succeeded
(up to ``eci:operationTimeout``), and Running for a second without a container ending (so a
container that exits at start is seen); a group that fails, or never gets there, fails the
deployment with one line (the group, the reason, the exit code, the last lines of its log) and
stays in the stack: ``destroy`` removes it, a changed program replaces it. ``check`` says in
``match_preview`` which cache would be chosen, counting the caches of
the same program that are created or rebuilt in the same deployment (the group waits for them),
and fails, naming the property, for what is knowable before anything is made: a ``cache_id``
that does not exist or is not usable, an image the registry does not have, credentials missing
or refused. Any change to the group replaces it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    UpdateResult,
)

from ..backends.base import (
    NOT_STARTED_HERE,
    Backend,
    BackendError,
    BackendRegistryAuthError,
    BackendRegistryUnavailable,
    KeepsContainerLogs,
    NotFound,
)
from ..engine.cost import PriceError, estimate_group
from ..engine.diff import diff_group
from ..engine.matcher import CacheIndex
from ..engine.models import (
    MAX_IMAGES_PER_CACHE,
    CacheKind,
    CacheRecord,
    CacheSelection,
    CacheStatus,
    ContainerGroupRecord,
    ContainerGroupSpec,
    ContainerStatus,
    EvictionStrategy,
    GroupStatus,
    ImageCacheSpec,
)
from ..engine.refs import parse_image_ref
from .checks import PropertyFailure, credentials_failure, validate
from .common import Props, client_token, given_fields, is_unknown, next_generation, unknown_keys
from .configured_provider import ConfiguredProvider, backend_errors
from .pricing import prices_of
from .sdk_server_patch import UPDATE_REPLACE, ResourceInitFailed, send_detailed_diff
from .settings import settings_failures

SPEC_FIELDS = tuple(ContainerGroupSpec.model_fields)
# Inputs that inform the preview but never change the group (it is matched once, at creation).
PREVIEW_ONLY = (
    "backend",
    "region",
    "match_preview",
    "stack_caches",
    "location",
    "prices",
    "cost",
    # The identity of the create (see ``common.client_token``), as for image caches.
    "resource_key",
    "generation",
)
BEING_BUILT = "being built in this update"
# How long a create watches a Running group before it counts as up: a container that exits
# at start (a bad command, a missing file) has ended by then.
STEADY_SECONDS = 1.0
# What a create decides once and answers with: kept while it waits for the group.
DECIDED_AT_CREATE = (
    "cache_id",
    "cache_name",
    "match_degree",
    "match_reason",
    "auto_created_cache_id",
)
LOG_LINES = 3


def spec_from(props: dict[str, Any]) -> ContainerGroupSpec:
    return ContainerGroupSpec(**given_fields(props, SPEC_FIELDS))


def _pending_caches(backend: Backend, stack_caches: list[Props]) -> list[CacheRecord]:
    """The program's caches that will be created or rebuilt before this group is created, as
    the records they will have then. A cache whose id is known and whose content is what its
    record holds is already counted by the backend's matching."""
    now = datetime.now(UTC)
    pending = []
    for n, cache in enumerate(stack_caches):
        if not isinstance(cache, dict):
            continue  # not one the program declared (it sends objects)
        if is_unknown(cache.get("images")) or is_unknown(cache.get("size_gib")):
            continue  # not known until deploy: cannot be counted now
        try:
            declared = ImageCacheSpec(
                name="declared",
                images=cache.get("images") or [],
                size_gib=cache.get("size_gib") or 20,
            )
        except (ValueError, TypeError):
            continue  # the cache's own check reports it
        cache_id = cache.get("cache_id")
        if cache_id and not is_unknown(cache_id):
            try:
                current = backend.get_image_cache(cache_id)
            except NotFound:
                current = None
            if (
                current is not None
                and set(current.images) == set(declared.images)
                and current.size_gib == declared.size_gib
            ):
                continue
        name = cache.get("name")
        pending.append(
            CacheRecord(
                id=cache_id if cache_id and not is_unknown(cache_id) else f"pending-{n}",
                name=name if isinstance(name, str) else f"cache {n}",
                kind=CacheKind.MANUAL,
                region=backend.region,
                images=declared.images,
                size_gib=declared.size_gib,
                status=CacheStatus.READY,
                eviction=EvictionStrategy.NEVER,
                created_at=now,
            )
        )
    return pending


def preview_text(
    backend: Backend, spec: ContainerGroupSpec, stack_caches: list[Props]
) -> tuple[str, CacheRecord | None]:
    """What ``match_preview`` says, and the existing cache it names (if any)."""
    if spec.cache == CacheSelection.NONE:
        return "no cache (cache selection is none)", None
    if spec.cache == CacheSelection.EXPLICIT:
        return f"explicit: {spec.cache_id}", None
    pending = _pending_caches(backend, stack_caches)
    result = backend.match(spec)
    if pending:
        rebuilt = {c.id for c in pending}
        existing = []
        for candidate in result.ranking:
            if candidate.cache_id not in rebuilt:
                with contextlib.suppress(NotFound):
                    existing.append(backend.get_image_cache(candidate.cache_id))
        result = CacheIndex([*existing, *pending]).match(
            spec.images, backend.region, spec.ephemeral_storage_gib
        )
    best = result.chosen
    if best is not None:
        if best.cache_id in {c.id for c in pending}:
            # Not built yet: no creation time to give (its stand-in's is the preview's).
            return f"will use {best.name} ({BEING_BUILT}): {best.degree.label}; {best.fit}", None
        return f"would use {best.name} ({best.cache_id}): {best.degree.label}; {best.reason}", None
    if spec.cache == CacheSelection.AUTO_CREATE:
        return "no matching cache now; one would be created automatically", None
    return "no matching cache now; images would be pulled", None


def registry_failures(
    backend: Backend, spec: ContainerGroupSpec, held: set[str]
) -> tuple[list[CheckFailure], str | None]:
    """Ask the registry for every image the cache does not hold: failures, or a warning."""
    images = [i for i in spec.images if str(i) not in held]
    if not images:
        return [], None
    try:
        for first in range(0, len(images), MAX_IMAGES_PER_CACHE):  # a plan takes 20 at most
            chunk = images[first : first + MAX_IMAGES_PER_CACHE]
            servers = {i.registry for i in chunk}
            backend.plan_image_cache(
                ImageCacheSpec(
                    name="preflight",
                    images=chunk,
                    size_gib=2048,
                    credentials=[c for c in spec.credentials if c.server in servers],
                    insecure_registries=spec.insecure_registries,
                    plain_http_registries=spec.plain_http_registries,
                )
            )
    except BackendRegistryAuthError as err:
        registries = {i.registry for i in images}
        return [credentials_failure(err, registries, spec.credentials)], None
    except BackendRegistryUnavailable as err:
        return [], f"the registry did not answer ({err})"
    except (BackendError, ValueError) as err:  # an image not found, among others
        return [CheckFailure("containers", str(err))], None
    return [], None


class ContainerGroupProvider(ConfiguredProvider):
    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        settings = self.settings_for(news)
        inputs = {**news, "location": settings.location, "generation": next_generation(olds)}
        refused = settings_failures(settings, olds)
        if refused:
            return CheckResult(inputs, refused)
        unknown = [k for k in unknown_keys(news) if k not in ("stack_caches", "cache_id")]
        if unknown:
            return CheckResult(inputs, [])  # validated again once the values are known
        cache_id_unknown = is_unknown(news.get("cache_id"))
        values = {**news, "cache_id": "imc-pending"} if cache_id_unknown else news
        spec, failures = validate(lambda: spec_from(values))
        if spec is None:
            return CheckResult(inputs, failures)
        try:
            cost = estimate_group(spec.extra_ephemeral_storage_gib, prices_of(news))
            inputs["cost"] = cost.as_output()
        except PriceError as err:
            return CheckResult(inputs, [PropertyFailure(err)])
        if olds and "containers" in olds and not diff_group(olds, inputs, SPEC_FIELDS):
            inputs["match_preview"] = olds.get("match_preview")  # matched once, at creation
            return CheckResult(inputs, [])
        if cache_id_unknown:
            inputs["match_preview"] = "explicit: the cache created in this update"
            return CheckResult(inputs, [])
        try:
            backend = settings.open()
        except BackendError as err:  # e.g. no cloud credentials where the preview runs
            inputs["match_preview"] = f"unknown until deploy ({err})"
            return CheckResult(inputs, [])
        try:
            return self._check(backend, inputs, spec)
        except BackendError as err:
            return CheckResult(inputs, [CheckFailure("", str(err))])

    def _check(self, backend: Backend, inputs: Props, spec: ContainerGroupSpec) -> CheckResult:
        held: set[str] = set()
        if spec.cache == CacheSelection.EXPLICIT and spec.cache_id is not None:
            try:
                cache = backend.get_image_cache(spec.cache_id)
            except NotFound:
                return CheckResult(
                    inputs, [CheckFailure("cache_id", f"no image cache {spec.cache_id} exists")]
                )
            except BackendError as err:
                inputs["match_preview"] = f"explicit: {spec.cache_id} (not checked: {err})"
                return CheckResult(inputs, [])
            if not cache.usable:
                reason = f": {cache.failure}" if cache.failure else ""
                return CheckResult(
                    inputs,
                    [
                        CheckFailure(
                            "cache_id",
                            f"image cache {cache.id} is not usable ({cache.status.value}{reason})",
                        )
                    ],
                )
            held = {str(i) for i in cache.images}
        stack_caches = inputs.get("stack_caches")
        stack_caches = stack_caches if isinstance(stack_caches, list) else []
        try:
            preview, _ = preview_text(backend, spec, stack_caches)
        except BackendError as err:  # e.g. the cloud API unreachable from here
            preview = f"unknown until deploy ({err})"
        pending_images = set()
        for c in stack_caches:
            images = c.get("images") if isinstance(c, dict) else None
            if isinstance(images, list) and not is_unknown(images):
                for image in images:
                    with contextlib.suppress(ValueError):  # the cache's own check reports it
                        pending_images.add(str(parse_image_ref(image)))
        failures, warning = registry_failures(backend, spec, held | pending_images)
        if warning:
            preview += f"; image check skipped: {warning}"
        if spec.unused_credentials:
            warning = (
                f"no image comes from {', '.join(spec.unused_credentials)}, whose credentials "
                "are given"
            )
            preview += f"; warning: {warning}"
            # What a provider writes to stderr, the CLI shows (without a resource to attach to).
            print(f"warning: container group {spec.name}: credentials: {warning}", file=sys.stderr)
        inputs["match_preview"] = preview
        return CheckResult(inputs, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = diff_group(olds, news, SPEC_FIELDS)
        send_detailed_diff(dict.fromkeys(changed, UPDATE_REPLACE))
        return DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        """A create repeated after an interrupted deployment (same resource, same generation)
        gets the group the first attempt made, through the create's token. The create waits
        until the group is up (see the module's docstring)."""
        spec = spec_from(props)
        settings = self.settings_for(props)
        with backend_errors():
            backend = settings.open()
            requested = time.time()
            record = backend.create_container_group(spec, client_token=create_token(props, spec))
            record = wait_up(backend, record, settings.operation_timeout)
        outs = outputs_of(record, props, startup_seconds(record, requested))
        if not is_up(record):
            raise ResourceInitFailed(
                failure_line(backend, record, settings.operation_timeout), record.id, outs
            )
        return CreateResult(id_=record.id, outs=outs)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Only for a group whose create did not bring it up (any change replaces a group):
        the engine asks again on the next ``up``, and the group is waited for again."""
        settings = self.settings_for(news)
        with backend_errors():
            backend = self.backend_of(news, olds)
            read = as_decided(backend.get_container_group(id_), olds)
            record = wait_up(backend, read, settings.operation_timeout)
        outs = outputs_of(record, {**olds, **news})
        if not is_up(record):
            raise ResourceInitFailed(
                failure_line(backend, record, settings.operation_timeout), record.id, outs
            )
        return UpdateResult(outs=outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with backend_errors():
            try:
                record = self.backend_of(props).get_container_group(id_)
            except NotFound:
                return ReadResult(id_=None, outs={})
        return ReadResult(id_=id_, outs=outputs_of(as_decided(record, props), props))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        with backend_errors(), contextlib.suppress(NotFound):
            self.backend_of(props).delete_container_group(id_)


def create_token(props: dict[str, Any], spec: ContainerGroupSpec) -> str | None:
    """The create's idempotency token: the resource, its generation, and what is asked for.

    The engine checks a replacement again without its old inputs, so a replacement's generation
    starts at 0 again, as its first create's did: the request in the token keeps a replacement
    from getting (or, asking for something else under the same token, removing) the group it
    replaces, which the engine deletes once the replacement is up. Credentials count by server
    and user: a rotated password asks for the same group."""
    key = props.get("resource_key")
    if not key:
        return None
    asked = spec.model_dump(mode="json", exclude={"credentials"})
    asked["credentials"] = sorted([c.server, c.username] for c in spec.credentials)
    request = hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()[:16]
    return client_token(f"{key}#{request}", int(props.get("generation") or 0))


# The outputs that hold what a create decided, by the record's field names.
DECIDED_OUTPUTS = {
    "cache_id": "cache_used",
    "cache_name": "cache_name",
    "match_degree": "match_degree",
    "match_reason": "match_reason",
    "auto_created_cache_id": "auto_created_cache_id",
}


def as_decided(record: ContainerGroupRecord, outs: dict[str, Any]) -> ContainerGroupRecord:
    """``record`` as read, with the cache decision its create recorded in ``outs`` (the
    state). The cloud's describe names only the cache a group used (from its events), not its
    name, how well it matched or why: a refresh must not turn an exact match into none. What
    the create did not know (an automatic cache made later) is taken from the read."""
    decided = {field: outs[key] for field, key in DECIDED_OUTPUTS.items() if outs.get(key)}
    return record.model_copy(update=decided) if decided else record


def wait_up(backend: Backend, record: ContainerGroupRecord, timeout: float) -> ContainerGroupRecord:
    """The group once it has settled: Succeeded or Failed; Running with every container
    running for ``STEADY_SECONDS``; a container ending with an error and restarting; or
    Pending where nothing can start. Otherwise as it is when ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    pause = 0.05
    steady_since: float | None = None
    while True:
        if record.status in (GroupStatus.SUCCEEDED, GroupStatus.FAILED) or (
            crashing(record) or record.status_reason.startswith(NOT_STARTED_HERE)
        ):
            return record
        running = [c.state == "Running" for c in record.containers if not c.init]
        if record.status == GroupStatus.RUNNING and all(running):
            steady_since = steady_since or time.monotonic()
            if time.monotonic() - steady_since >= STEADY_SECONDS:
                return record
        else:
            steady_since = None
        left = deadline - time.monotonic()
        if left <= 0:
            return record
        time.sleep(min(pause, left))
        pause = min(pause * 1.5, 1.0)  # a local start takes a fraction of a second, a cloud's more
        # The cache decision is the create's answer (the cloud's describe tells less of it).
        decided = {name: getattr(record, name) for name in DECIDED_AT_CREATE}
        record = backend.get_container_group(record.id).model_copy(update=decided)


def crashing(record: ContainerGroupRecord) -> ContainerStatus | None:
    """A container that ended with an error and is restarting (restart policy Always or
    OnFailure): the group may say Running, but what it runs does not stay up."""
    return next(
        (c for c in record.containers if c.restart_count and c.exit_code not in (None, 0)), None
    )


def is_up(record: ContainerGroupRecord) -> bool:
    """Succeeded, or Running without a container crashing (pulumi-alicloud's target states)."""
    if record.status == GroupStatus.SUCCEEDED:
        return True
    return record.status == GroupStatus.RUNNING and crashing(record) is None


def first_container(record: ContainerGroupRecord) -> ContainerStatus | None:
    return next((c for c in record.containers if not c.init), None)


def startup_seconds(record: ContainerGroupRecord, requested: float) -> float | None:
    """From the create call (``requested``, a Unix time) to the first container running."""
    container = first_container(record)
    if container is None or container.started_at is None:
        return None
    return round(max(0.0, container.started_at.timestamp() - requested), 3)


def failure_line(backend: Backend, record: ContainerGroupRecord, timeout: float) -> str:
    """One line: the group, why it is not up, the exit code and its last lines of output."""
    # The container that failed (init containers run first), else the first one.
    ordered = sorted(record.containers, key=lambda c: not c.init)
    crashed = crashing(record)
    failed = crashed or next((c for c in ordered if c.exit_code not in (None, 0)), None)
    if crashed is not None:
        restarts = crashed.reason or f"restarting after exit code {crashed.exit_code}"
        why = f"is not up: container {crashed.name} is {restarts}"
    elif record.status == GroupStatus.FAILED:
        exited = f"container {failed.name} exited with code {failed.exit_code}" if failed else ""
        why = f"failed: {record.status_reason or exited or 'no reason given'}"
    elif record.status_reason.startswith(NOT_STARTED_HERE):
        why = f"did not start: {record.status_reason.removeprefix(NOT_STARTED_HERE)}"
    else:
        why = f"is still {record.status.value} after {timeout:g} s: {record.status_reason}"
    parts = [f"container group {record.name} ({record.id}) {why.rstrip(': ')}"]
    if failed is not None and f"code {failed.exit_code}" not in why:
        parts.append(f"container {failed.name} exit code {failed.exit_code}")
    shown = failed or (ordered[0] if ordered else None)
    lines = last_log_lines(backend, record.id, shown.name) if shown else []
    if shown is not None and lines:
        parts.append(f"last log lines of {shown.name}: " + " | ".join(lines))
    parts.append("it stays in the stack until destroyed or replaced")
    return "; ".join(parts)


def last_log_lines(backend: Backend, group_id: str, container: str) -> list[str]:
    """The container's last lines of output, where the backend keeps them (the local one)."""
    if not isinstance(backend, KeepsContainerLogs):
        return []
    try:
        text = backend.container_logs(group_id, container, tail=4096).decode(errors="replace")
    except (BackendError, OSError, ValueError):
        return []
    lines = [line.strip()[:200] for line in text.splitlines() if line.strip()]
    return lines[-LOG_LINES:]


def outputs_of(
    record: ContainerGroupRecord, props: dict[str, Any], startup: float | None = None
) -> dict[str, Any]:
    """The resource's outputs; ``startup`` is measured by the create (a read keeps it)."""
    if startup is None:
        startup = (props.get("phases") or {}).get("startup_seconds")
    return {
        **{k: props.get(k) for k in (*SPEC_FIELDS, *PREVIEW_ONLY)},
        "group_id": record.id,
        "status": record.status.value,
        "images": [str(i) for i in record.images],
        "ephemeral_storage_gib": record.ephemeral_storage_gib,
        "cache_used": record.cache_id,
        "cache_name": record.cache_name,
        "match_degree": record.match_degree,
        "match_reason": record.match_reason,
        "auto_created_cache_id": record.auto_created_cache_id,
        "bytes_fetched": record.bytes_fetched,
        "bytes_from_cache": record.bytes_from_cache,
        "preparation_seconds": record.preparation_seconds,
        # What runs (the local backend runs containers; the cloud reports its own).
        "status_reason": record.status_reason,
        "containers_state": [
            {
                "name": c.name,
                "state": c.state,
                "exit_code": c.exit_code,
                "restart_count": c.restart_count,
                "reason": c.reason,
            }
            for c in record.containers
        ],
        "address": record.address,
        "phases": {
            "image_preparation_seconds": record.preparation_seconds,
            "container_start_seconds": record.container_start_seconds,
            # From the create call to the first container running (the vendor's start-up).
            "startup_seconds": startup,
        },
    }
