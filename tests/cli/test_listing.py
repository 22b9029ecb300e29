"""`caches list` costs a fixed number of store reads and little per row: the table is drawn as
rich draws it, the JSON is written as the standard library writes it, and the store is read
the same number of times for 3 caches as for 60."""

import io
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.cli.common import plain_json
from eci_imagecache.cli.main import app
from eci_imagecache.cli.tables import Listing
from eci_imagecache.engine.models import (
    CacheEvent,
    CacheKind,
    CacheRecord,
    CacheStatus,
    EvictionStrategy,
    Quota,
    SnapshotKind,
)
from eci_imagecache.engine.refs import ImageRef

HEADERS = ("id", "name", "status", "size")
ROWS = [
    ("imc-1", "web", "Ready", "20 GiB"),
    ("imc-22", "wéb-日本", "Creating (local)", "1 GiB"),
    ("imc-333", "", "Failed", "300 GiB"),
]


def drawn(table: Table | Listing, width: int, terminal: bool) -> str:
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width,
        force_terminal=terminal,
        color_system="standard" if terminal else None,
    )
    console.print(table)
    return buffer.getvalue()


@pytest.mark.parametrize("terminal", [False, True], ids=["piped", "terminal"])
@pytest.mark.parametrize("count", [0, 1, 3])
def test_a_listing_is_drawn_byte_for_byte_as_rich_draws_its_table(
    count: int, terminal: bool
) -> None:
    expected, listing = (
        Table(*HEADERS, title=f"{count} caches"),
        Listing(*HEADERS, title=f"{count} caches"),
    )
    for row in ROWS[:count]:
        expected.add_row(*row)
        listing.add_row(*row)
    assert drawn(listing, 120, terminal) == drawn(expected, 120, terminal)


def test_rows_wider_than_the_console_are_cut_with_an_ellipsis_not_wrapped() -> None:
    listing = Listing(*HEADERS, title="narrow")
    for row in ROWS:
        listing.add_row(*row)
    lines = drawn(listing, 30, terminal=False).splitlines()
    # title, top, header, rule, a line a row, bottom
    assert len(lines) == 5 + len(ROWS)
    assert all(len(line) <= 30 for line in lines)
    rows = [[cell.strip() for cell in line.strip("│").split("│")] for line in lines[4:-1]]
    assert [row[0] for row in rows] == [row[0] for row in ROWS]  # ids whole
    cut = [cell for row in rows for cell in row if cell.endswith("…")]
    assert cut and all(
        full.startswith(cell[:-1])
        for cell, full in zip(
            (c for row in rows for c in row), (c for row in ROWS for c in row), strict=True
        )
        if cell.endswith("…")
    )


def test_a_row_must_have_a_cell_for_each_column() -> None:
    with pytest.raises(ValueError, match="4 cells, not 3"):
        Listing(*HEADERS).add_row("imc-1", "web", "Ready")


PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=30,
)


@given(PLAIN)
def test_plain_json_is_what_json_dumps_writes(value: object) -> None:
    assert plain_json(value) == json.dumps(value, indent=2)


def seeded(data: Path, count: int) -> None:
    """``count`` caches of each kind and state a listing shows, with layers and events."""
    backend = LocalBackend(data_dir=data, quota=Quota(max_manual=count, max_auto=count))
    start = datetime.now(UTC) - timedelta(hours=1)
    with backend.store.transaction() as db:
        for i in range(count):
            auto = i % 3 == 0
            record = CacheRecord(
                id=f"imc-listing{i:04d}",
                name=f"auto-create-for-eci-{i}" if auto else f"cache-{i}",
                kind=CacheKind.AUTO if auto else CacheKind.MANUAL,
                region=backend.region,
                images=[ImageRef(registry="registry.example.com", repository=f"app{i}", tag="v1")],
                size_gib=30 if auto else 20,
                status=CacheStatus.CREATING if i % 3 == 1 else CacheStatus.READY,
                snapshot=SnapshotKind.LOCAL if i % 3 == 1 else SnapshotKind.STANDARD,
                eviction=EvictionStrategy.LRU if auto else EvictionStrategy.NEVER,
                retention_days=7 if i % 3 == 2 else None,
                created_at=start + timedelta(seconds=i),
                last_used_at=start if auto else None,
                progress=50 if i % 3 == 1 else 100,
            )
            backend.store.put_cache(db, record)
            backend.store.set_layers(db, record.id, {f"sha256:{i:064x}": 1000})
            backend.store.add_event(
                db, record.id, CacheEvent(at=start, kind="Normal", reason="Created", message="")
            )
            if record.status == CacheStatus.CREATING:
                backend.store.start_build(db, record.id, "another-host", 1)


def listed(data: Path, options: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[str, int]:
    """`caches list` in this process, with the SQL statements it ran counted."""
    statements: list[str] = []
    connect = sqlite3.connect

    def traced(*args, **kwargs) -> sqlite3.Connection:
        db = connect(*args, **kwargs)
        db.set_trace_callback(statements.append)
        return db

    with monkeypatch.context() as patch:
        patch.setattr(sqlite3, "connect", traced)
        result = CliRunner().invoke(
            app, [*options, "caches", "list"], env={"ECI_IMAGECACHE_HOME": str(data)}
        )
    assert result.exit_code == 0, result.output
    assert statements
    return result.output, len(statements)


@pytest.mark.parametrize("options", [[], ["--json"]], ids=["table", "json"])
def test_listing_reads_the_store_as_often_for_60_caches_as_for_3(
    tmp_path: Path, options: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    counts = {}
    for count in (3, 60):
        seeded(tmp_path / str(count), count)
        output, counts[count] = listed(tmp_path / str(count), options, monkeypatch)
        if options:
            caches = json.loads(output)
            assert [c["id"] for c in caches] == [f"imc-listing{i:04d}" for i in range(count)]
            assert output == json.dumps(caches, indent=2) + "\n"
        else:
            assert f"{count} image caches" in output
            assert all(f"imc-listing{i:04d}" in output for i in range(count))
    assert counts[60] == counts[3]
