"""``eci-imagecache groups list|show|logs``: container groups, their containers and output.

These commands only read. On the local backend they open the store read-only and show what the
records and the process table say (a group whose supervisor died, containers nobody recorded);
they never stop, restart, unmount or write anything: recovery is for the commands that write.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from ..backends.base import KeepsContainerLogs
from ..engine.models import ContainerGroupRecord
from ..engine.planner import counted
from . import common

groups_app = typer.Typer(help="Container groups and their containers.", no_args_is_help=True)


def _status(record: ContainerGroupRecord) -> str:
    return (
        f"{record.status.value} ({record.status_reason})"
        if record.status_reason
        else (record.status.value)
    )


def _containers(record: ContainerGroupRecord) -> str:
    parts = []
    for c in record.containers:
        code = f" exit {c.exit_code}" if c.exit_code is not None else ""
        restarts = f" restarts {c.restart_count}" if c.restart_count else ""
        parts.append(f"{c.name}: {c.state}{code}{restarts}")
    return ", ".join(parts) or "-"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


@groups_app.command("list")
@common.command
def groups_list() -> None:
    """Container groups with their status, containers and address."""
    records = common.reader().list_container_groups()
    if common.options.json_output:
        common.emit_json([r.model_dump(mode="json") for r in records])
        return
    table = Table(
        "ID",
        "Name",
        "Status",
        "Containers",
        "Address",
        "Cache",
        "Start",
        title=counted(len(records), "container group"),
    )
    for r in records:
        table.add_row(
            r.id,
            r.name,
            _status(r),
            _containers(r),
            r.address or "-",
            r.cache_name or "-",
            _seconds(r.container_start_seconds),
        )
    common.out.print(table)


@groups_app.command("show")
@common.command
def groups_show(group_id: Annotated[str, typer.Argument(help="container group id")]) -> None:
    """One group: its cache decision, measured phases, and each container's state."""
    record = common.reader().get_container_group(group_id)
    if common.options.json_output:
        common.emit_json(record.model_dump(mode="json"))
        return
    rows: list[tuple[str, Any]] = [
        ("id", record.id),
        ("name", record.name),
        ("status", _status(record)),
        ("address", record.address or "-"),
        ("cache", f"{record.cache_name} ({record.cache_id})" if record.cache_id else "none"),
        ("match", f"{record.match_degree}: {record.match_reason}"),
        ("image preparation", _seconds(record.preparation_seconds)),
        ("container start", _seconds(record.container_start_seconds)),
    ]
    for key, value in rows:
        common.out.print(f"[bold]{key}[/bold]: {value}", highlight=False)
    table = Table("Container", "State", "Exit code", "Restarts", "Started", "Reason")
    for c in record.containers:
        table.add_row(
            c.name + (" (init)" if c.init else ""),
            c.state,
            "-" if c.exit_code is None else str(c.exit_code),
            str(c.restart_count),
            c.started_at.isoformat(timespec="seconds") if c.started_at else "-",
            c.reason or "",
        )
    common.out.print(table)


@groups_app.command("logs")
@common.command
def groups_logs(
    group_id: Annotated[str, typer.Argument(help="container group id")],
    container: Annotated[
        str | None, typer.Option("--container", "-c", help="default: the group's first")
    ] = None,
    tail: Annotated[int | None, typer.Option(min=0, help="only the last N bytes")] = None,
) -> None:
    """A container's output (the most recent part is kept, bounded)."""
    backend = common.reader()
    if not isinstance(backend, KeepsContainerLogs):
        common.fail(f"the {common.options.backend} backend does not keep container logs")
    record = backend.get_container_group(group_id)
    name = container or next((c.name for c in record.containers if not c.init), None)
    if name is None:
        common.fail(
            f"container group {group_id} has no container that started", common.EXIT_NOT_FOUND
        )
    sys.stdout.buffer.write(backend.container_logs(group_id, name, tail))
    sys.stdout.flush()
