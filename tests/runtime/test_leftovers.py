"""Which group directories a reconcile takes for leftovers, and which ones gc sweeps."""

from __future__ import annotations

import os
from pathlib import Path

from eci_imagecache.backends.local.blobs import BlobStore
from eci_imagecache.backends.local.housekeeping import RecordsToDelete, find_files_to_remove
from eci_imagecache.runtime.layers import LayerStore
from eci_imagecache.runtime.supervisor import RuntimeReader

GROUP = "eci-0123456789abcdef0123"


class StartingMeanwhile:
    """Runtime state whose first read of the group ids comes just before a start: the start
    adds its row, then makes its directory and plan (the order ``Runtime.start`` keeps)."""

    def __init__(self, groups_dir: Path) -> None:
        self.groups_dir = groups_dir
        self.rows: list[str] = []
        self.started = False

    def group_ids(self) -> list[str]:
        seen = list(self.rows)
        if not self.started:
            self.started = True
            self.rows.append(GROUP)
            (self.groups_dir / GROUP).mkdir()
            (self.groups_dir / GROUP / "plan.json").write_text("{}")
        return seen


def test_a_group_started_while_leftovers_are_listed_is_not_one(tmp_path: Path) -> None:
    reader = RuntimeReader(tmp_path, StartingMeanwhile(tmp_path))  # type: ignore[arg-type]
    assert reader.leftover_directories() == []
    # Once it has both, it is a group like any other; without its row it is a leftover.
    assert reader.leftover_directories() == []
    reader.state.rows.clear()  # type: ignore[attr-defined]
    assert reader.leftover_directories() == [GROUP]


def test_gc_keeps_the_directory_of_a_group_the_runtime_holds_without_a_record(
    tmp_path: Path,
) -> None:
    """A group being created has its runtime row and directory before its record: gc, which
    sweeps group directories no record names, leaves it (an old one without a row goes)."""
    groups = tmp_path / "groups"
    for name in (GROUP, "eci-ffffffffffffffffffff"):
        (groups / name).mkdir(parents=True)
        os.utime(groups / name, (0, 0))
    to_delete = RecordsToDelete(expired=[], failed=[], groups=set(), unheld=set(), snapshots=set())
    found = find_files_to_remove(
        BlobStore(tmp_path / "blobs"),
        LayerStore(tmp_path / "layers"),
        tmp_path / "snapshots",
        groups,
        to_delete,
        cutoff=1.0,
        runtime_groups=[GROUP],
    )
    assert [p.name for p in found.files] == ["eci-ffffffffffffffffffff"]
