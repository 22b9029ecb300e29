"""Diff rules: what a change to an image cache does.

Each field change is a no-op, an in-place update, an in-place update that rebuilds the snapshot,
or a replacement. Images are compared as sets of normalized references.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from enum import IntEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from .refs import ImageRef, parse_image_ref, registry_server


class ChangeKind(IntEnum):
    """Ordered by impact, so the worst change of a diff is ``max`` of its fields."""

    NONE = 0
    UPDATE = 1
    REBUILD = 2
    REPLACE = 3


# Fields that UpdateImageCache changes without a new snapshot.
UPDATE_FIELDS = frozenset(
    {
        "name",
        "retention_days",
        "eviction",
        "instant",
        "instant_copies",
        "layer_reuse",
        "credentials",
        "insecure_registries",
        "plain_http_registries",
        "vswitch_id",
        "security_group_id",
        "eip_instance_id",
        "tags",
        "resource_group_id",
        "standard_copies",
        "acr_registries",
    }
)
# Fields whose change needs a new snapshot: the content or the disk it lives on.
REBUILD_FIELDS = frozenset({"images", "size_gib"})
# Where the cache lives: a change means a new cache elsewhere.
REPLACE_FIELDS = frozenset({"backend", "region", "zone_id"})
# What Alibaba Cloud's UpdateImageCache cannot do: it has no InsecureRegistry or
# PlainHttpRegistry parameter, and no value of RetentionDays means "never expire" again. On that
# backend such a change makes a new cache instead of pretending to update this one.
CLOUD_REPLACE_FIELDS = frozenset({"insecure_registries", "plain_http_registries"})
# Fields whose change alters the build plan (what is fetched and reused), so a preview re-plans.
PLAN_FIELDS = REBUILD_FIELDS | {"layer_reuse"}


class FieldChange(BaseModel):
    model_config = ConfigDict(frozen=True)

    field: str
    kind: ChangeKind
    detail: str


class CacheDiff(BaseModel):
    model_config = ConfigDict(frozen=True)

    changes: list[FieldChange]
    images_added: list[str] = []
    images_removed: list[str] = []

    @property
    def kind(self) -> ChangeKind:
        return max((c.kind for c in self.changes), default=ChangeKind.NONE)

    @property
    def changed_fields(self) -> list[str]:
        return [c.field for c in self.changes]

    @property
    def replaced_fields(self) -> list[str]:
        return [c.field for c in self.changes if c.kind == ChangeKind.REPLACE]

    def summary(self) -> str:
        if not self.changes:
            return "no changes"
        verb = {
            ChangeKind.UPDATE: "update in place",
            ChangeKind.REBUILD: "rebuild the snapshot in place",
            ChangeKind.REPLACE: "replace",
        }[self.kind]
        return f"{verb}: " + "; ".join(c.detail for c in self.changes)


def _image_set(value: Any) -> set[str]:
    refs = value or []
    return {str(r if isinstance(r, ImageRef) else parse_image_ref(r)) for r in refs}


def _normalized(field: str, value: Any) -> Any:
    if field in ("insecure_registries", "plain_http_registries"):
        return sorted({str(v).lower() for v in value or []})
    if field == "eviction":
        return (value or "").upper()
    if field == "acr_registries":
        return sorted(
            (dict(r) if isinstance(r, Mapping) else r.model_dump() for r in value or []),
            key=lambda r: str(r.get("instance_id")),
        )
    if field == "credentials":
        # A password change counts, but only its fingerprint is ever compared or kept.
        return sorted(credential_key(c) for c in value or [])
    return value


def credential_key(credential: Mapping[str, Any]) -> tuple[str, str, str]:
    password = credential.get("password") or ""
    if hasattr(password, "get_secret_value"):
        password = password.get_secret_value()
    fingerprint = hashlib.sha256(str(password).encode()).hexdigest() if password else ""
    server = registry_server(str(credential.get("server", "")))
    return (server, str(credential.get("username", "")), fingerprint)


def credentials_change(before: Any, after: Any) -> str:
    """Which registries' credentials are added, removed or rotated; never a value."""
    old = {key[0]: key for key in (credential_key(c) for c in before or [])}
    new = {key[0]: key for key in (credential_key(c) for c in after or [])}
    parts = [f"added for {s}" for s in sorted(new.keys() - old.keys())]
    parts += [f"removed for {s}" for s in sorted(old.keys() - new.keys())]
    for server in sorted(old.keys() & new.keys()):
        if old[server][1] != new[server][1]:
            parts.append(f"username changed for {server}")
        if old[server][2] != new[server][2]:
            parts.append(f"password rotated for {server}")
    return "credentials " + ", ".join(parts)


def kind_of(field: str, before: Any = None, after: Any = None, backend: Any = None) -> ChangeKind:
    if field in REPLACE_FIELDS:
        return ChangeKind.REPLACE
    on_cloud = backend == "alicloud"
    if on_cloud and field in CLOUD_REPLACE_FIELDS:
        return ChangeKind.REPLACE
    if on_cloud and field == "retention_days" and before is not None and after is None:
        return ChangeKind.REPLACE
    if field in REBUILD_FIELDS:
        return ChangeKind.REBUILD
    return ChangeKind.UPDATE


def diff_cache(old: Mapping[str, Any], new: Mapping[str, Any]) -> CacheDiff:
    """Compare two cache property maps (spec fields plus ``backend``/``region``)."""
    changes: list[FieldChange] = []
    added: list[str] = []
    removed: list[str] = []
    for field in sorted((set(old) | set(new)) & (UPDATE_FIELDS | REBUILD_FIELDS | REPLACE_FIELDS)):
        before, after = old.get(field), new.get(field)
        if field == "images":
            old_set, new_set = _image_set(before), _image_set(after)
            if old_set == new_set:
                continue
            added, removed = sorted(new_set - old_set), sorted(old_set - new_set)
            parts = [f"+{i}" for i in added] + [f"-{i}" for i in removed]
            changes.append(
                FieldChange(
                    field=field, kind=ChangeKind.REBUILD, detail="images " + ", ".join(parts)
                )
            )
            continue
        if _normalized(field, before) == _normalized(field, after):
            continue
        detail = (
            credentials_change(before, after)
            if field == "credentials"
            else f"{field} {before!r} -> {after!r}"
        )
        kind = kind_of(field, before, after, new.get("backend"))
        changes.append(FieldChange(field=field, kind=kind, detail=detail))
    return CacheDiff(changes=changes, images_added=added, images_removed=removed)


def diff_group(old: Mapping[str, Any], new: Mapping[str, Any], fields: Iterable[str]) -> list[str]:
    """The fields of a container group that changed. A group's cache is chosen once, at
    creation, from its images and storage, so every one of them replaces the group."""
    old, new = _without_empty_items(old), _without_empty_items(new)
    return sorted(
        f
        for f in fields
        if old.get(f) != new.get(f) and not (old.get(f) in _EMPTY and new.get(f) in _EMPTY)
    )


_EMPTY: tuple[object, ...] = (None, [], {}, "")


def _without_empty_items(props: Mapping[str, Any]) -> dict[str, Any]:
    """Items of lists (containers, credentials) compared without their unset fields: a group
    recorded with ``"args": []`` is the same as one declared without ``args``."""
    return {
        key: [
            {k: v for k, v in item.items() if v not in _EMPTY}
            if isinstance(item, Mapping)
            else item
            for item in value
        ]
        if isinstance(value, list)
        else value
        for key, value in props.items()
    }
