"""``eci-imagecache review``: a pull-request comment from ``pulumi preview --json``.

It reads what the preview recorded for our resources — the ``change`` a cache update makes, its
``build_plan`` (what the build fetches and reuses), its ``cost`` estimate, a group's
``match_preview`` (the cache it would use, and why) — and writes Markdown: caches created,
rebuilt, updated, replaced and deleted; groups and their caches; the estimated one-off and
monthly cost change; and warnings a reviewer should act on.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from ..engine.cost import money
from ..engine.models import BASE_EPHEMERAL_STORAGE_GIB
from .common import EXIT_USAGE, emit_json, fail, options

CACHE_TYPE = "pulumi-python:dynamic/eci:ImageCache"
GROUP_TYPE = "pulumi-python:dynamic/eci:ContainerGroup"
AUTOMATIC = ("auto", "auto-create")
# Steps of one replacement the preview lists separately; reported once, as "replace".
REPLACE_OPS = ("replace", "create-replacement", "delete-replaced", "discard-replaced")


class PreviewError(ValueError):
    """The input is not the JSON of ``pulumi preview --json``."""


class CacheChange(BaseModel):
    name: str
    action: str  # create, rebuild, update, replace, delete
    cache_id: str | None = None  # known unless the cache is new
    detail: str = ""
    images: list[str] = []
    build_plan: str | None = None
    build_once: float | None = None  # estimate of this change's one-off cost
    monthly_delta: float | None = None
    retention_days: int | None = None
    size_gib: int | None = None


class GroupChange(BaseModel):
    name: str
    action: str  # create, replace, delete
    cache: str  # the cache it will use (or used), and why
    extra_storage_gib: int = 0
    monthly_delta: float | None = None


class Review(BaseModel):
    caches: list[CacheChange]
    groups: list[GroupChange]
    currency: str = "USD"
    prices: str | None = None
    one_off: float = 0
    monthly: float = 0
    unknown_costs: int = 0
    warnings: list[str]
    errors: list[str] = []  # the preview failed: what it said


def load_preview(text: str) -> dict[str, Any]:
    try:
        preview = json.loads(text)
    except json.JSONDecodeError as err:
        raise PreviewError(f"not JSON ({err.msg} at line {err.lineno})") from None
    # Every preview has a change summary (steps are left out when there are none); stack outputs
    # or an exported state must not pass for a preview that changes nothing.
    if (
        not isinstance(preview, dict)
        or not ("steps" in preview or "changeSummary" in preview)
        or not isinstance(preview.get("steps", []), list)
    ):
        raise PreviewError(
            "not the output of `pulumi preview --json` (no steps and no change summary)"
        )
    return preview


def _name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def _state(step: dict[str, Any], which: str) -> dict[str, Any]:
    """Inputs overlaid with outputs of the old or new state (outputs know more after deploy)."""
    state = step.get(which) or {}
    values = dict(state.get("inputs") or {})
    if which == "oldState":
        values.update({k: v for k, v in (state.get("outputs") or {}).items() if v is not None})
    return values


def _number(cost: Any, key: str) -> float | None:
    if isinstance(cost, dict) and isinstance(cost.get(key), int | float):
        return float(cost[key])
    return None


def _action(op: str, new: dict[str, Any]) -> str:
    if op in REPLACE_OPS:
        return "replace"
    if op == "update":
        change = str(new.get("change") or "")
        return "rebuild" if change.startswith("rebuild") else "update"
    return op


class _Totals:
    def __init__(self) -> None:
        self.one_off = 0.0
        self.monthly = 0.0
        self.unknown = 0
        self.currency: str | None = None
        self.prices: str | None = None
        self.old_prices: str | None = None  # for a preview that only deletes

    def note(self, cost: Any, old: bool = False) -> None:
        """The prices this preview's estimates use: the new state's, whatever the step order."""
        if isinstance(cost, dict):
            self.currency = self.currency or cost.get("currency")
            if old:
                self.old_prices = self.old_prices or cost.get("prices")
            else:
                self.prices = self.prices or cost.get("prices")

    def add(self, one_off: float | None, monthly: float | None) -> None:
        if one_off is None or monthly is None:
            self.unknown += 1
            return
        self.one_off += one_off
        self.monthly += monthly


def _delta(new: float | None, old: float | None) -> float | None:
    return None if new is None or old is None else new - old


def _cache_change(step: dict[str, Any], totals: _Totals) -> CacheChange:
    op = step["op"]
    new, old = _state(step, "newState"), _state(step, "oldState")
    action = _action(op, new)
    name = _name(step["urn"])
    cache_id = (step.get("oldState") or {}).get("id") or None
    totals.note(new.get("cost"))
    totals.note(old.get("cost"), old=True)
    new_monthly = _number(new.get("cost"), "monthly")
    old_monthly = _number(old.get("cost"), "monthly")
    if action == "delete":
        change = CacheChange(
            name=name,
            action=action,
            cache_id=cache_id,
            images=list(old.get("images") or []),
            monthly_delta=None if old_monthly is None else -old_monthly,
            build_once=0,
            size_gib=old.get("size_gib"),
        )
    else:
        builds = action in ("create", "rebuild", "replace")
        change = CacheChange(
            name=name,
            action=action,
            cache_id=cache_id,
            detail="" if action == "create" else str(new.get("change") or ""),
            images=list(new.get("images") or []),
            build_plan=new.get("build_plan") if builds else None,
            build_once=_number(new.get("cost"), "build_once") if builds else 0,
            monthly_delta=new_monthly if action == "create" else _delta(new_monthly, old_monthly),
            retention_days=new.get("retention_days"),
            size_gib=new.get("size_gib"),
        )
    totals.add(change.build_once, change.monthly_delta)
    return change


def _group_change(step: dict[str, Any], totals: _Totals) -> GroupChange:
    op = step["op"]
    new, old = _state(step, "newState"), _state(step, "oldState")
    action = _action(op, new)
    name = _name(step["urn"])
    totals.note(new.get("cost"))
    new_monthly = _number(new.get("cost"), "monthly")
    old_monthly = _number(old.get("cost"), "monthly")
    if action == "delete":
        used = old.get("cache_used")
        cache = f"was using {old.get('cache_name') or used}" if used else "was using no cache"
        change = GroupChange(
            name=name,
            action=action,
            cache=cache,
            extra_storage_gib=int(old.get("extra_ephemeral_storage_gib") or 0),
            monthly_delta=None if old_monthly is None else -old_monthly,
        )
    else:
        change = GroupChange(
            name=name,
            action=action,
            cache=str(new.get("match_preview") or "unknown until deploy"),
            extra_storage_gib=int(new.get("extra_ephemeral_storage_gib") or 0),
            monthly_delta=new_monthly if action == "create" else _delta(new_monthly, old_monthly),
        )
    totals.add(0, change.monthly_delta)
    return change


def _warnings(steps: list[dict[str, Any]], preview: dict[str, Any]) -> list[str]:
    warnings: list[str] = []
    for step in steps:
        if step["op"] in ("delete", "delete-replaced", "discard-replaced", "same"):
            continue
        new = _state(step, "newState")
        kind = (step.get("newState") or {}).get("type")
        name = _name(step["urn"])
        if kind == CACHE_TYPE:
            if new.get("retention_days") is None:
                warnings.append(
                    f"cache `{name}` has no `retention_days`: its snapshot is billed until the "
                    "cache is deleted"
                )
            plan = str(new.get("build_plan") or "")
            if plan.startswith("unknown"):
                warnings.append(f"cache `{name}`: build plan {plan}")
            if (new.get("size_gib") or 0) > BASE_EPHEMERAL_STORAGE_GIB:
                warnings.append(
                    f"cache `{name}` is {new['size_gib']} GiB: groups using it need "
                    f"{new['size_gib'] - BASE_EPHEMERAL_STORAGE_GIB} GiB of paid extra "
                    "ephemeral storage"
                )
        elif kind == GROUP_TYPE:
            selection = new.get("cache") or ("explicit" if new.get("cache_id") else "auto-create")
            containers = [*(new.get("containers") or []), *(new.get("init_containers") or [])]
            always = sorted(
                str(c.get("name"))
                for c in containers
                if isinstance(c, dict) and c.get("image_pull_policy") == "Always"
            )
            if selection in AUTOMATIC and always:
                warnings.append(
                    f"group `{name}` matches caches automatically but pulls with `Always` "
                    f"({', '.join(always)}): layers are downloaded again; use `IfNotPresent`"
                )
    warnings += _diagnostics(preview, "warning")
    return warnings


def _diagnostics(preview: dict[str, Any], severity: str) -> list[str]:
    found = []
    for diagnostic in preview.get("diagnostics") or []:
        if diagnostic.get("severity") == severity:
            where = f"`{_name(diagnostic['urn'])}`: " if diagnostic.get("urn") else ""
            message = " ".join(str(diagnostic.get("message") or "").split())
            found.append(f"{where}{message}")
    return found


def review_preview(preview: dict[str, Any]) -> Review:
    totals = _Totals()
    caches: list[CacheChange] = []
    groups: list[GroupChange] = []
    ours: list[dict[str, Any]] = []
    seen_replacements: set[str] = set()
    for step in preview.get("steps") or []:
        state = step.get("newState") or step.get("oldState") or {}
        kind = state.get("type")
        if kind not in (CACHE_TYPE, GROUP_TYPE):
            continue
        ours.append(step)
        if step.get("op") in ("same", "read", "refresh"):
            continue  # listed only with --show-sames
        if step.get("op") in REPLACE_OPS:
            if step["urn"] in seen_replacements or step["op"] != "replace":
                # One line per replacement: the "replace" step carries old and new state.
                continue
            seen_replacements.add(step["urn"])
        if kind == CACHE_TYPE:
            caches.append(_cache_change(step, totals))
        else:
            groups.append(_group_change(step, totals))
    return Review(
        caches=sorted(caches, key=lambda c: (c.name, c.action)),
        groups=sorted(groups, key=lambda g: (g.name, g.action)),
        currency=totals.currency or "USD",
        prices=totals.prices or totals.old_prices,
        one_off=totals.one_off,
        monthly=totals.monthly,
        unknown_costs=totals.unknown,
        warnings=_warnings(ours, preview),
        errors=_diagnostics(preview, "error"),
    )


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|") if text not in (None, "") else "—"


def _signed(amount: float | None, currency: str, suffix: str = "") -> str:
    if amount is None:
        return "unknown"
    sign = "+" if amount > 0 else "-" if amount < 0 else ""
    return f"{sign}{money(abs(amount), currency)}{suffix}"


def render_markdown(review: Review) -> str:
    cur = review.currency
    lines = ["## Image caches and container groups in this preview", ""]
    if review.errors:
        # A failed preview lists only what it planned before it stopped: never read as clean.
        lines += [
            f"> [!CAUTION]\n> **The preview failed** ({len(review.errors)} error(s)); the changes "
            "below are only those planned before it stopped.",
            "",
        ]
        lines += [f"- {_cell(e)}" for e in review.errors]
        lines.append("")
    elif not review.caches and not review.groups:
        lines += ["No image cache or container group changes.", ""]
    cost = (
        f"**Estimated cost change** (an estimate): **{_signed(review.one_off, cur)} one-off**, "
        f"**{_signed(review.monthly, cur, '/month')}**"
    )
    if review.unknown_costs:
        cost += f" ({review.unknown_costs} change(s) without an estimate)"
    lines += [cost + ".", ""]
    if review.caches:
        lines += [
            f"### Image caches ({len(review.caches)})",
            "",
            "| cache | change | what the build fetches and reuses | one-off | monthly |",
            "| --- | --- | --- | ---: | ---: |",
        ]
        for c in review.caches:
            what = c.action + (f": {c.detail.split(': ', 1)[-1]}" if c.detail else "")
            lines.append(
                f"| `{c.name}` | {_cell(what)} | {_cell(c.build_plan)} "
                f"| {_signed(c.build_once, cur)} | {_signed(c.monthly_delta, cur)} |"
            )
        lines.append("")
    if review.groups:
        lines += [
            f"### Container groups ({len(review.groups)})",
            "",
            "| group | change | cache it will use, and why | extra storage | monthly |",
            "| --- | --- | --- | ---: | ---: |",
        ]
        for g in review.groups:
            lines.append(
                f"| `{g.name}` | {g.action} | {_cell(g.cache)} | {g.extra_storage_gib} GiB "
                f"| {_signed(g.monthly_delta, cur)} |"
            )
        lines.append("")
    if review.warnings:
        lines += [f"### Warnings ({len(review.warnings)})", ""]
        lines += [f"- {w}" for w in review.warnings]
        lines.append("")
    footnote = (
        "Costs are estimates: build time from the bytes each build fetches, snapshots billed on "
        "their content, groups' extra ephemeral storage for a full month"
    )
    if review.prices:
        footnote += f"; {review.prices}"
    lines += [f"<sub>{footnote}.</sub>", ""]
    return "\n".join(lines)


def review_command(
    preview_file: Annotated[
        str, typer.Argument(help="`pulumi preview --json` output; '-' reads stdin")
    ] = "-",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write the Markdown here")
    ] = None,
) -> None:
    """Write a pull-request comment (Markdown) from `pulumi preview --json`."""
    try:
        text = sys.stdin.read() if preview_file == "-" else Path(preview_file).read_text()
        review = review_preview(load_preview(text))
    except OSError as err:
        fail(f"cannot read {preview_file}: {err.strerror}", EXIT_USAGE)
        return
    except PreviewError as err:
        fail(f"{preview_file}: {err}", EXIT_USAGE)
        return
    if options.json_output:
        emit_json(review.model_dump(mode="json"))
        return
    markdown = render_markdown(review)
    if output is not None:
        try:
            output.write_text(markdown)
        except OSError as err:
            fail(f"cannot write {output}: {err.strerror}", EXIT_USAGE)
    else:
        sys.stdout.write(markdown)  # as is: no console markup or emoji codes
