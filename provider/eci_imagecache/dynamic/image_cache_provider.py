"""The ``ImageCache`` provider: the hooks behind the resource (``image_cache``), run in the
provider process only.

``check`` validates with the engine, asks the registry what a build would fetch and reuse (only
when a build will happen) and records it in ``build_plan``; ``change`` names what ``up`` will do.
``diff`` decides with the engine's diff rules and returns a detailed diff, per property, so that
``pulumi preview --diff`` and ``--json`` show it, also after drift found by ``refresh``.

Every create carries a token derived from the resource's identity (see ``common.client_token``):
a create repeated after an interrupted deployment gets the cache the first attempt made, waits
for its build, and records it, instead of building a second one.
"""

from __future__ import annotations

import contextlib
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
    Backend,
    BackendError,
    BackendRegistryAuthError,
    BackendRegistryUnavailable,
    NotFound,
)
from ..engine.cost import PriceError, Prices, estimate_cache
from ..engine.diff import ChangeKind, diff_cache
from ..engine.lifecycle import expires_at
from ..engine.models import CacheAdoption, CacheRecord, CacheStatus, ImageCacheSpec
from .checks import PropertyFailure, backend_failure, credentials_failure, validate
from .common import Props, client_token, given_fields, next_generation, unknown_keys
from .configured_provider import ConfiguredProvider, backend_errors
from .pricing import prices_of
from .sdk_server_patch import UPDATE, UPDATE_REPLACE, UserError, send_detailed_diff
from .settings import settings_failures

# Inputs that make the spec: exactly the engine model's fields.
SPEC_FIELDS = tuple(ImageCacheSpec.model_fields)
# Inputs the provider adds or keeps besides the spec.
BOOKKEEPING = (
    "backend",
    "region",
    "adopt_id",
    "location",
    "resource_key",
    "generation",
    "change",
    "build_plan",
    "prices",
    "cost",
)
# Caches returned by a create in this process: a delete of the same id in the same deployment
# is the resource that create replaced, and the cache now belongs to the replacement.
_CREATED_HERE: set[str] = set()
POLL_SECONDS = 0.5


def spec_from(props: dict[str, Any]) -> ImageCacheSpec:
    return ImageCacheSpec(**given_fields(props, SPEC_FIELDS))


def comparable(props: Props, backend: str = "local") -> Props:
    """Inputs or outputs with defaults applied, so that unset and default compare equal. The
    backend decides which changes replace (see the engine's diff rules)."""
    spec = spec_from(props)
    values = spec.model_dump(mode="json", exclude={"credentials", "images"})
    return {
        **values,
        "images": [str(i) for i in spec.images],
        "credentials": [c.model_dump() for c in spec.credentials],
        "backend": backend,
    }


def record_props(record: CacheRecord) -> dict[str, Any]:
    """What a backend record says about the fields it knows, in the shape ``diff_cache`` reads."""
    return {
        "name": record.name,
        "images": [str(i) for i in record.images],
        "size_gib": record.size_gib,
        "retention_days": record.retention_days,
        "eviction": record.eviction.value,
    }


def reported_settings(record: CacheRecord, props: dict[str, Any]) -> dict[str, Any]:
    """Settings the cloud reports back beside ``record_props``, so a refresh sees a change
    made elsewhere; where a backend does not report one, the declared value stands."""
    return {
        "tags": props.get("tags") if record.tags is None else record.tags,
        "resource_group_id": record.resource_group_id or props.get("resource_group_id"),
    }


def reprice_estimate(cost: Any, spec: ImageCacheSpec, prices: Prices) -> Any:
    """The previous estimate at today's prices (the content, hence the plan, is unchanged)."""
    if not isinstance(cost, dict) or not {"fetch_bytes", "content_bytes"} <= cost.keys():
        return cost
    fetched, content = int(cost["fetch_bytes"]), int(cost["content_bytes"])
    return estimate_cache(fetched, content, spec.size_gib, prices).as_output()


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def outputs_of(record: CacheRecord, props: dict[str, Any]) -> dict[str, Any]:
    """The full output map: every input, normalized, plus what the backend reports."""
    return {
        **{k: props.get(k) for k in (*SPEC_FIELDS, *BOOKKEEPING)},
        **record_props(record),
        **reported_settings(record, props),
        # Build options: not every backend reports them back, so the declared values stand.
        "instant": props.get("instant"),
        "layer_reuse": props.get("layer_reuse"),
        "cache_id": record.id,
        "kind": record.kind.value,
        "status": record.status.value,
        "snapshot": record.snapshot.value,
        "progress": record.progress,
        "failure": record.failure,
        "created_at": _iso(record.created_at),
        "expires_at": _iso(expires_at(record)),
        "last_used_at": _iso(record.last_used_at),
        "snapshot_id": record.snapshot_id,
        "layer_count": record.layer_count,
        "content_bytes": record.content_bytes,
        "fetched_bytes": record.fetched_bytes,
        "reused_bytes": record.reused_bytes,
        "build_plan": record.plan or props.get("build_plan"),
        "prices": props.get("prices"),
        "cost": props.get("cost"),  # an estimate, made at preview beside the build plan
    }


def _wait_built(backend: Backend, record: CacheRecord, timeout: float) -> CacheRecord:
    """Wait for a build that another process runs (an interrupted deployment's provider)."""
    deadline = time.monotonic() + timeout
    while record.status in (CacheStatus.CREATING, CacheStatus.UPDATING):
        if time.monotonic() > deadline:
            raise UserError(
                f"image cache {record.name} ({record.id}) is still being built after "
                f"{timeout:.0f} s; the build goes on: run the deployment again to record it"
            )
        time.sleep(POLL_SECONDS)
        record = backend.get_image_cache(record.id)
    return record


def create_idempotent(
    backend: Backend, spec: ImageCacheSpec, token: str | None, timeout: float
) -> CacheRecord:
    """Create, or take the cache an earlier attempt with the same token made (waiting for its
    build), and bring it to the declared settings."""
    for attempt in (1, 2):
        record = _wait_built(backend, backend.create_image_cache(spec, client_token=token), timeout)
        if record.status == CacheStatus.FAILED:
            if attempt == 1 and token:
                continue  # the earlier attempt's build died with its process: this one builds
            raise UserError(f"image cache {spec.name} ({record.id}) failed: {record.failure}")
        break
    declared = {
        **record_props(record),
        "name": spec.name,
        "images": [str(i) for i in spec.images],
        "size_gib": spec.size_gib,
        "retention_days": spec.retention_days,
        "eviction": spec.eviction.value,
    }
    if diff_cache(record_props(record), declared).changes:
        record = backend.update_image_cache(record.id, spec)
    return record


class ImageCacheProvider(ConfiguredProvider):
    """Every hook opens the backend the provider's settings name (see ``settings``)."""

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        settings = self.settings_for(news)
        inputs = {**news, "location": settings.location, "generation": next_generation(olds)}
        refused = settings_failures(settings, olds)
        if refused:
            return CheckResult(inputs, refused)
        if unknown_keys(news):
            return CheckResult(inputs, [])  # validated again once the values are known
        spec, failures = validate(lambda: spec_from(news))
        if news.get("adopt_id") is not None:
            failures += validate(lambda: CacheAdoption(adopt_id=news["adopt_id"]))[1]
        if spec is None or failures:
            return CheckResult(inputs, failures)
        inputs["images"] = [str(i) for i in spec.images]
        try:
            prices = prices_of(news)
        except PriceError as err:
            return CheckResult(inputs, [PropertyFailure(err)])
        try:
            backend = settings.open()
        except BackendError as err:  # e.g. no cloud credentials where the preview runs
            inputs["build_plan"] = f"unknown until deploy ({err})"
            return CheckResult(inputs, [])
        try:
            return self._check(backend, olds or {}, inputs, spec, prices)
        except BackendError as err:
            return CheckResult(inputs, [CheckFailure("", str(err))])

    def _check(
        self,
        backend: Backend,
        olds: dict[str, Any],
        inputs: dict[str, Any],
        spec: ImageCacheSpec,
        prices: Prices,
    ) -> CheckResult:
        rebuild = verify = True
        if "images" in olds:
            kind = inputs.get("backend") or "local"
            change = diff_cache(comparable(olds, kind), comparable(inputs, kind))
            rebuild = change.kind >= ChangeKind.REBUILD
            # New or rotated credentials are tried against the registry even without a build.
            verify = rebuild or "credentials" in change.changed_fields
            inputs["change"] = change.summary() if change.changes else olds.get("change")
            previous_plan, previous_cost = olds.get("build_plan"), olds.get("cost")
        elif inputs.get("adopt_id"):
            try:
                adopted = backend.get_image_cache(inputs["adopt_id"])
            except NotFound:
                return CheckResult(
                    inputs,
                    [CheckFailure("adopt_id", f"no image cache {inputs['adopt_id']} to adopt")],
                )
            change = diff_cache(
                {**record_props(adopted), "backend": inputs.get("backend") or "local"},
                comparable(inputs, inputs.get("backend") or "local"),
            )
            rebuild = change.kind >= ChangeKind.REBUILD
            inputs["change"] = f"adopt {adopted.id}" + (
                f", then {change.summary()}" if change.changes else ""
            )
            previous_plan, previous_cost = adopted.plan, None
        else:
            inputs["change"] = "create"
            previous_plan = previous_cost = None
        if not rebuild:
            # No build: the plan (and the estimate) of the last one stand.
            inputs["build_plan"] = previous_plan
            inputs["cost"] = reprice_estimate(previous_cost, spec, prices)
        if not verify:
            return CheckResult(inputs, [])
        failures = []
        try:
            plan = backend.plan_image_cache(spec)
        except BackendRegistryUnavailable as err:
            if rebuild:
                inputs["build_plan"] = f"unknown until deploy: the registry did not answer ({err})"
        except BackendRegistryAuthError as err:
            registries = {i.registry for i in spec.images}
            failures.append(credentials_failure(err, registries, spec.credentials))
        except (BackendError, ValueError) as err:  # an image not found, a size too small
            failures.append(backend_failure(err, "images"))
        else:
            if rebuild:
                inputs["build_plan"] = plan.summary()
                cost = estimate_cache(plan.fetch_bytes, plan.content_bytes, spec.size_gib, prices)
                inputs["cost"] = cost.as_output()
        return CheckResult(inputs, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """``olds`` are the outputs in state (what the last refresh saw), ``news`` the inputs."""
        unknown = [k for k in unknown_keys(news) if k not in BOOKKEEPING]
        if unknown:  # known at deploy time only: they may change
            send_detailed_diff(dict.fromkeys(unknown, UPDATE))
            return DiffResult(changes=True, replaces=[])
        backend = self.settings_for(news).backend
        result = diff_cache(comparable(olds, backend), comparable(news, backend))
        detail = {
            c.field: UPDATE_REPLACE if c.kind == ChangeKind.REPLACE else UPDATE
            for c in result.changes
        }
        if result.changes:
            for key in ("change", "build_plan", "cost"):
                if olds.get(key) != news.get(key):
                    detail[key] = UPDATE
        send_detailed_diff(detail)
        return DiffResult(
            changes=bool(result.changes),
            replaces=result.replaced_fields,
            delete_before_replace=False,
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        settings = self.settings_for(props)
        spec = spec_from(props)
        with backend_errors():
            backend = settings.open()
            if props.get("adopt_id"):
                record = backend.update_image_cache(props["adopt_id"], spec)
            else:
                key = props.get("resource_key")
                token = client_token(key, int(props.get("generation") or 0)) if key else None
                record = create_idempotent(backend, spec, token, settings.operation_timeout)
        _CREATED_HERE.add(record.id)
        return CreateResult(id_=record.id, outs=outputs_of(record, props))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with backend_errors():
            try:
                record = self.backend_of(props).get_image_cache(id_)
            except NotFound:
                return ReadResult(id_=None, outs={})  # gone (evicted or expired): refresh drops it
        outs = outputs_of(record, props)
        if not diff_cache(comparable(props), comparable(outs)).changes:
            return ReadResult(id_=id_, outs=outs)
        # Drift: the inputs in state take what the backend holds, so the next preview compares
        # the declaration with reality, says what `up` will do, and plans the build it needs.
        inputs = {k: v for k, v in outs.items() if k in (*SPEC_FIELDS, *BOOKKEEPING)}
        inputs = {k: v for k, v in inputs.items() if v not in (None, [], {})}
        return ReadResult(id_=id_, outs=outs, inputs=inputs)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        with backend_errors():
            record = self.backend_of(news, recorded=olds).update_image_cache(id_, spec_from(news))
        return UpdateResult(outs=outputs_of(record, news))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        with backend_errors():
            backend = self.backend_of(props)
            if id_ in _CREATED_HERE:
                return  # the create that replaced this resource took the same cache over
            with contextlib.suppress(NotFound):  # already gone (evicted, expired): done
                backend.delete_image_cache(id_)
