"""A read-only view of the local backend's container groups, for commands that only look.

Opening :class:`~.backend.LocalBackend` recovers: it fails builds whose process died and stops
containers no record claims. A read must not: this view opens the store read-only and shows
what the records and the process table say, including what recovery would act on (a group
whose supervisor has died, containers started by a process that died before recording them).
It starts, stops, unmounts and writes nothing; reconciling is left to the commands that write
(the provider's operations, ``eci-imagecache gc``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from ...engine.models import BASE_EPHEMERAL_STORAGE_GIB, ContainerGroupRecord, GroupStatus
from ...runtime import host
from ...runtime.state import PENDING, RUNNING, GroupState
from ...runtime.supervisor import Runtime, StartError
from ..base import NotFound
from .context import LOCAL_REGION, default_data_dir
from .groups import observed
from .store import Store


class LocalView:
    def __init__(self, data_dir: Path | None = None, region: str = LOCAL_REGION) -> None:
        self.data_dir = data_dir or default_data_dir()
        self.region = region
        path = self.data_dir / "state.db"
        # No store yet: nothing was ever made here (and a read creates nothing).
        self._store = Store(path, read_only=True) if path.is_file() else None
        self._runtime = Runtime.reader(self.data_dir / "groups", path) if self._store else None

    def _records(self, group_id: str | None = None) -> list[ContainerGroupRecord]:
        if self._store is None:
            return []
        with self._store.read() as db:
            # A store being made by its first writer has no tables for a moment.
            if not db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'container_groups'"
            ).fetchone():
                return []
            if group_id is None:
                return self._store.list_groups(db)
            record = self._store.get_group(db, group_id)
        return [record] if record else []

    def _seen(self, record: ContainerGroupRecord) -> ContainerGroupRecord:
        assert self._runtime is not None
        return observed(record, self._runtime.observe(record.id))

    def _unclaimed(self, state: GroupState) -> ContainerGroupRecord:
        """A group the runtime runs that no record claims (its creator was killed before
        recording it, or its deletion was interrupted): shown, with what recovery will do."""
        if state.owner_pid is not None and host.alive(state.owner_pid):
            why = f"being created by process {state.owner_pid}"
        else:
            runs = state.status in (PENDING, RUNNING)
            what = "stops and removes it" if runs else "removes what is left"
            why = (
                f"not recorded: process {state.owner_pid} that started it ended first"
                if state.owner_pid is not None
                else "no record claims it"
            ) + f"; recovery (the next pulumi up, or eci-imagecache gc) {what}"
        record = ContainerGroupRecord(
            id=state.id,
            name=state.name,
            region=self.region,
            status=GroupStatus.PENDING,
            images=[],
            created_at=datetime.fromtimestamp(state.requested_at, UTC),
            ephemeral_storage_gib=BASE_EPHEMERAL_STORAGE_GIB,
        )
        record = observed(record, state)
        reason = f"{why}; {record.status_reason}" if record.status_reason else why
        return record.model_copy(update={"status_reason": reason})

    def list_container_groups(self) -> list[ContainerGroupRecord]:
        records = [self._seen(r) for r in self._records()]
        if self._runtime is None:
            return records
        claimed = {r.id for r in records}
        for group_id in self._runtime.group_ids():
            if group_id in claimed:
                continue
            state = self._runtime.observe(group_id)
            if state is not None:
                records.append(self._unclaimed(state))
        return sorted(records, key=lambda r: r.id)

    def get_container_group(self, group_id: str) -> ContainerGroupRecord:
        found = self._records(group_id)
        if found:
            return self._seen(found[0])
        state = self._runtime.observe(group_id) if self._runtime else None
        if state is None:
            raise NotFound(f"container group {group_id} not found")
        return self._unclaimed(state)

    def container_logs(self, group_id: str, container: str, tail: int | None = None) -> bytes:
        """A container's output (bounded: the most recent part is kept)."""
        record = self.get_container_group(group_id)
        names = [c.name for c in record.containers]
        if container not in names:
            raise NotFound(
                f"container group {group_id} has no container {container!r} "
                f"(has {', '.join(names) or 'none running'})"
            )
        assert self._runtime is not None
        try:
            return self._runtime.logs(group_id, container, tail)
        except StartError as err:
            raise NotFound(str(err)) from None
