"""``eci-imagecache``: look at caches, explain matches, collect garbage, serve the emulator.

Commands that only look (``caches list|show|events``, ``usage``, ``match explain``, ``groups``,
``gc --dry-run``) change nothing: on the local backend they read through its read-only view, and
recovery (failing builds whose process died, stopping orphaned containers, deleting expired
caches) is left to the commands that write.

Tables for people, ``--json`` for machines. Exit codes: 0 success, 1 the operation failed,
2 bad usage, 3 not found. Errors are one line on stderr.
"""

from __future__ import annotations

import contextlib
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from ..backends.base import BackendReader, NotFound
from ..backends.factory import make_emulator_server
from ..engine.lifecycle import expires_at
from ..engine.models import CacheRecord, ContainerGroupSpec, ImageCacheSpec
from ..engine.planner import counted, human_bytes
from .common import (
    EXIT_USAGE,
    Options,
    backend,
    command,
    emit_json,
    err,
    fail,
    options,
    out,
    reader,
    set_options,
)
from .groups import groups_app
from .review import review_command
from .tables import Listing

app = typer.Typer(
    help="ECI image caches: inspect, explain matches, collect garbage.",
    no_args_is_help=True,
    add_completion=False,
)
caches_app = typer.Typer(help="Image caches.", no_args_is_help=True)
match_app = typer.Typer(help="Automatic matching.", no_args_is_help=True)
registry_app = typer.Typer(help="A local OCI registry with demo images.", no_args_is_help=True)
emulator_app = typer.Typer(help="The ECI OpenAPI emulator.", no_args_is_help=True)
app.add_typer(caches_app, name="caches")
app.add_typer(match_app, name="match")
app.add_typer(registry_app, name="registry")
app.add_typer(emulator_app, name="emulator")
app.command("review")(review_command)


@app.callback()
def main_options(
    backend: Annotated[str, typer.Option(envvar="ECI_BACKEND", help="local or alicloud")] = "local",
    region: Annotated[str | None, typer.Option(envvar="ECI_REGION")] = None,
    endpoint: Annotated[
        str | None, typer.Option(envvar="ECI_ENDPOINT", help="API endpoint (alicloud)")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(envvar="ECI_IMAGECACHE_HOME", help="local backend data")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    set_options(
        Options(
            backend=backend,
            region=region,
            endpoint=endpoint,
            data_dir=data_dir,
            json_output=json_output,
        )
    )


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "never"
    seconds = int((now - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if abs(seconds) >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def cache_json(record: CacheRecord) -> dict[str, Any]:
    data = record.model_dump(mode="json")
    data["images"] = [str(i) for i in record.images]
    expiry = expires_at(record)
    data["expires_at"] = expiry.isoformat() if expiry else None
    data["usable"] = record.usable
    return data


@caches_app.command("list")
@command
def caches_list() -> None:
    """All caches with status, size, expiry and last use."""
    records = reader().list_image_caches()
    if options.json_output:
        return emit_json([cache_json(r) for r in records], plain=True)
    table = Listing(
        "id",
        "name",
        "kind",
        "status",
        "progress",
        "size",
        "content",
        "eviction",
        "expires",
        "last used",
        title=counted(len(records), "image cache"),
    )
    now = datetime.now(UTC)
    for r in records:
        expiry = expires_at(r)
        table.add_row(
            r.id,
            r.name,
            r.kind.value,
            r.status.value
            + (" (local)" if r.snapshot.value == "local" and r.status.value == "Creating" else ""),
            f"{r.progress}%",
            f"{r.size_gib} GiB",
            human_bytes(r.content_bytes),
            r.eviction.value or "never",
            expiry.strftime("%Y-%m-%d %H:%M") if expiry else "never",
            _ago(r.last_used_at, now),
        )
    out.print(table)
    return None


def cache_id_of(target: BackendReader, cache: str) -> str:
    """The id of ``cache``: an id (``imc-…``) as given, else the one cache of that name."""
    if cache.startswith("imc-"):
        return cache
    named = [c.id for c in target.list_image_caches() if c.name == cache]
    if len(named) == 1:
        return named[0]
    if not named:
        raise NotFound(f"image cache {cache} not found (no cache has that id or name)")
    raise NotFound(f"{len(named)} image caches are named {cache}: {', '.join(named)}; give an id")


CACHE_ARG = Annotated[str, typer.Argument(metavar="CACHE", help="a cache's id, or its name")]


@caches_app.command("show")
@command
def caches_show(cache: CACHE_ARG) -> None:
    """One cache in full."""
    view = reader()
    record = view.get_image_cache(cache_id_of(view, cache))
    data = cache_json(record)
    if options.json_output:
        return emit_json(data)
    table = Table("field", "value", show_header=False, title=f"{record.name} ({record.id})")
    for key, value in data.items():
        table.add_row(key, "\n".join(value) if isinstance(value, list) else str(value))
    out.print(table)
    return None


@caches_app.command("events")
@command
def caches_events(cache: CACHE_ARG) -> None:
    """The most recent creation events of a cache (at most 50)."""
    view = reader()
    cache_id = cache_id_of(view, cache)
    events = view.events(cache_id)
    if options.json_output:
        return emit_json([e.model_dump(mode="json") for e in events])
    table = Table("time", "type", "reason", "message", title=f"events of {cache_id}")
    for e in events:
        table.add_row(e.at.strftime("%Y-%m-%d %H:%M:%S"), e.kind, e.reason, e.message)
    out.print(table)
    return None


@caches_app.command("build")
@command
def caches_build(
    name: str,
    images: Annotated[list[str], typer.Argument(help="image references")],
    size_gib: Annotated[int, typer.Option(help="cache size in GiB")] = 20,
    retention_days: Annotated[int | None, typer.Option()] = None,
    eviction: Annotated[str, typer.Option(help="'' (never) or LRU")] = "",
    layer_reuse: Annotated[bool, typer.Option("--layer-reuse")] = False,
    instant: Annotated[bool, typer.Option("--instant")] = False,
) -> None:
    """Create a cache now, with a progress bar."""
    spec = ImageCacheSpec(
        name=name,
        images=images,
        size_gib=size_gib,
        retention_days=retention_days,
        eviction=eviction,
        layer_reuse=layer_reuse,
        instant=instant,
    )
    target = backend()
    if options.json_output:
        return emit_json(cache_json(target.create_image_cache(spec)))
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task(f"building {name}", total=None)
        record = target.create_image_cache(
            spec, progress=lambda done, total: bar.update(task, completed=done, total=total)
        )
    out.print(f"{record.name} ({record.id}): {record.status.value}; {record.plan}")
    return None


@caches_app.command("delete")
@command
def caches_delete(cache: CACHE_ARG) -> None:
    """Delete a cache."""
    target = backend()
    cache_id = cache_id_of(target, cache)
    target.get_image_cache(cache_id)
    target.delete_image_cache(cache_id)
    if options.json_output:
        return emit_json({"deleted": cache_id})
    out.print(f"deleted {cache_id}")
    return None


@match_app.command("explain")
@command
def match_explain(
    images: Annotated[list[str], typer.Argument(help="the container group's images")],
    ephemeral_storage: Annotated[int, typer.Option(help="extra ephemeral storage, GiB")] = 0,
) -> None:
    """Which cache a container group with these images would use now, and why."""
    group = ContainerGroupSpec(
        name="explain",
        extra_ephemeral_storage_gib=ephemeral_storage,
        cache="auto",
        containers=[{"name": f"c{i}", "image": image} for i, image in enumerate(images)],
    )
    result = reader().match(group)
    if options.json_output:
        return emit_json(
            result.model_dump(mode="json") | {"chosen": result.chosen and result.chosen.cache_id}
        )
    table = Table(
        "rank",
        "cache",
        "degree",
        "size",
        "reason",
        title=f"candidates for {group.ephemeral_storage_gib} GiB of storage",
    )
    for rank, c in enumerate(result.ranking, start=1):
        table.add_row(
            str(rank), f"{c.name} ({c.cache_id})", c.degree.label, f"{c.size_gib} GiB", c.reason
        )
    for r in result.rejected:
        table.add_row("-", f"{r.name} ({r.cache_id})", "-", "-", f"rejected: {r.reason}")
    out.print(table)
    out.print(f"chosen: {result.explain()}", highlight=False)
    return None


@app.command("usage")
@command
def usage() -> None:
    """Caches per kind against their quotas."""
    u = reader().usage()
    data = {
        "manual": {"used": u.manual, "quota": u.quota.max_manual},
        "auto": {"used": u.auto, "quota": u.quota.max_auto},
    }
    if options.json_output:
        return emit_json(data)
    table = Table("kind", "used", "quota", title="image cache usage")
    for kind, row in data.items():
        table.add_row(kind, str(row["used"]), str(row["quota"]))
    out.print(table)
    return None


@app.command("gc")
@command
def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say, do nothing")] = False,
    grace_minutes: Annotated[
        int,
        typer.Option(
            min=0, help="keep unreferenced blobs and layers younger than this (builds running)"
        ),
    ] = 10,
) -> None:
    """Apply retention and automatic-cache expiry now; drop failed caches, unreferenced blobs
    and unpacked layers."""
    # A dry run only looks: through the read-only view, which finds what gc would delete
    # after the recovery that opening the backend to write does (and changes nothing).
    source = reader() if dry_run else backend()
    report = source.gc(dry_run=dry_run, grace=timedelta(minutes=grace_minutes))
    if options.json_output:
        return emit_json(report.model_dump())
    verb = "would delete" if dry_run else "deleted"
    for line in report.expired:
        out.print(f"{verb} cache {line}", highlight=False)
    for line in report.failed:
        out.print(f"{verb} failed cache {line}", highlight=False)
    out.print(
        f"{verb} {counted(report.blobs_removed, 'unreferenced blob')} and "
        f"{counted(report.layers_removed, 'unpacked layer')} ({human_bytes(report.bytes_freed)})"
    )
    return None


@registry_app.command("serve")
def registry_serve(
    port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 5055,
    root: Annotated[Path | None, typer.Option(help="registry storage")] = None,
    seed: Annotated[bool, typer.Option("--seed/--no-seed", help="push the demo images")] = True,
    layer_mib: Annotated[
        int, typer.Option(min=1, max=4096, help="size of the demo images' base layer (MiB)")
    ] = 8,
) -> None:
    """Run a local registry (Debian's docker-registry) with the demo images until interrupted."""
    import signal
    import threading

    from ..testing.registry import ImageBuilder, RegistryServer, default_registry_root, push_samples
    from ..testing.runnable import BusyboxMissing, push_runnable

    server = RegistryServer(root or default_registry_root(), port=port)
    try:
        server.start()
    except (FileNotFoundError, RuntimeError) as e:
        fail(str(e))
    try:
        if seed:
            builder = ImageBuilder(server.url)
            samples = push_samples(builder, layer_size=layer_mib * 1024 * 1024)
            for name in samples.images:
                out.print(f"{server.host}/{name}", highlight=False)
            try:  # runnable images (busybox-static), for groups that really run
                runnable = push_runnable(builder)
            except BusyboxMissing as e:
                err.print(f"warning: no runnable demo images: {e}", highlight=False)
            else:
                for ref in runnable.references(server.host).values():
                    out.print(ref, highlight=False)
            builder.close()
        out.print(f"registry at {server.url} (Ctrl-C stops it)", highlight=False)
        sys.stdout.flush()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *a: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    finally:
        server.stop()


@emulator_app.command("serve")
def emulator_serve(
    port: Annotated[int, typer.Option(help="port")] = 8780,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    region: Annotated[str, typer.Option(help="the region it answers for")] = "cn-hangzhou",
    access_key: Annotated[
        list[str] | None,
        typer.Option(
            help="ID:SECRET accepted in signatures (repeatable); default: "
            "$ECI_EMULATOR_ACCESS_KEYS, comma-separated"
        ),
    ] = None,
) -> None:
    """Serve the local backend as the ECI OpenAPI, for the official SDK (signatures verified)."""
    import logging
    import os

    pairs = access_key or [
        p for p in os.environ.get("ECI_EMULATOR_ACCESS_KEYS", "").split(",") if p
    ]
    keys = dict(p.split(":", 1) for p in pairs if ":" in p)
    if not keys:
        fail("give at least one --access-key ID:SECRET (or ECI_EMULATOR_ACCESS_KEYS)", EXIT_USAGE)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    # The registry client's request lines hold image names from the requests served: the
    # emulator logs only the action and the status.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    server = make_emulator_server(
        keys, data_dir=options.data_dir, region=region, host=host, port=port
    )
    out.print(
        f"ECI API emulator for {region} at {server.endpoint} "
        f"({len(keys)} access keys); Ctrl-C stops it",
        highlight=False,
    )
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()


# Listed last in the help, as it was added last.
app.add_typer(groups_app, name="groups")

# The options of the whole command, and whether each takes a value.
GLOBAL_OPTIONS = {"--json": False, "--backend": True, "--region": True, "--endpoint": True}
GLOBAL_OPTIONS["--data-dir"] = True


def hoist_global_options(argv: list[str]) -> list[str]:
    """Global options typed after the subcommand (``caches list --json``) move before it, as
    users type them either way; a command's own option of the same name (``emulator serve
    --region``) stays with it."""
    group: Any = typer.main.get_command(app)
    options: list[str] = []
    commands: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(argv):
        token = argv[index]
        name = token.split("=", 1)[0]
        # The options of the command reached so far (the root's are the global ones).
        own = {opt for param in getattr(group, "params", []) for opt in param.opts}
        own = own if commands else set()
        if token == "--":
            rest += argv[index:]
            break
        if name in GLOBAL_OPTIONS and name not in own:
            takes = GLOBAL_OPTIONS[name] and "=" not in token
            options += argv[index : index + 1 + takes]
            index += 1 + takes
            continue
        if not rest and token in getattr(group, "commands", {}):
            commands.append(token)
            group = group.commands[token]
        else:
            rest.append(token)
        index += 1
    return [*options, *commands, *rest]


def main() -> None:
    app(args=hoist_global_options(sys.argv[1:]))


if __name__ == "__main__":
    main()
