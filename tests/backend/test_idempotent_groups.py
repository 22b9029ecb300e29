"""Container group creates carry a client token too: a create repeated after its caller died
(`pulumi` killed, the provider killed right after recording the group) returns the group the
first one made, as it is (running, or failed: a finished job is not run again); a group of the
token made for another request, or deleted meanwhile, gives way to a new one and leaves nothing
behind."""

from __future__ import annotations

import pytest

from eci_imagecache.backends.base import NotFound
from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.backends.local.view import LocalView
from eci_imagecache.engine.models import GroupStatus
from eci_imagecache.runtime.supervisor import Runtime

from ..support import crash
from .test_running_groups import runtime_here, settle, spec, traces  # noqa: F401

# Stops at once on SIGTERM (a shell as a container's first process ignores it otherwise).
SERVE = {"command": ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]}


def runtime_ids(backend: LocalBackend) -> list[str]:
    return Runtime.reader(backend.groups_dir, backend.store.path).group_ids()


def test_a_second_create_with_the_token_returns_the_running_group(backend, registry) -> None:
    first = backend.create_container_group(
        spec(registry, "job_ok", container=SERVE), client_token="t-1"
    )
    try:
        assert first.status == GroupStatus.RUNNING
        again = backend.create_container_group(
            spec(registry, "job_ok", container=SERVE), client_token="t-1"
        )
        assert (again.id, again.status) == (first.id, GroupStatus.RUNNING)
        assert [g.id for g in backend.list_container_groups()] == [first.id]
        assert runtime_ids(backend) == [first.id]
    finally:
        backend.delete_container_group(first.id)
    assert traces(first.id) == []


def test_a_creator_killed_right_after_recording_leaves_a_group_its_token_adopts(
    make_backend, registry, tmp_path
) -> None:
    """The record and the adoption commit together: the group's supervisor keeps it when its
    creator dies just after, and the same create run again returns it."""
    data = tmp_path / "killed"
    make_backend(data_dir=data)
    image = registry.runnable.references(registry.host)["job_ok"]
    made = spec(registry, "job_ok", container=SERVE)
    args = {
        "spec": {
            "name": made.name,
            "restart_policy": made.restart_policy,
            "containers": [{"name": "main", "image": image, **SERVE}],
        }
    }
    outcome = crash.run(data, "group", {**args, "token": "stack/dev/api#0"}, point=1)
    assert outcome.killed
    [left] = LocalView(data).list_container_groups()
    assert Runtime.reader(data / "groups", data / "state.db").state.group(left.id).owner_pid is None
    backend = make_backend(data_dir=data)
    try:
        again = backend.create_container_group(
            spec(registry, "job_ok", container=SERVE), client_token="stack/dev/api#0"
        )
        assert (again.id, again.status) == (left.id, GroupStatus.RUNNING)
        assert again.containers[0].state == "Running"
        assert [g.id for g in backend.list_container_groups()] == [left.id]
        assert runtime_ids(backend) == [left.id]
    finally:
        backend.delete_container_group(left.id)
    assert traces(left.id) == []
    assert list((data / "groups").iterdir()) == []


def test_a_group_of_the_token_that_failed_is_returned_as_it_is_not_run_again(
    backend, registry
) -> None:
    """Its create succeeded and then its job failed: an uninterrupted create would have
    returned that group, and ECI returns the group of a repeated ClientToken whatever its
    state since. A second run of the job is what the token is there to prevent."""
    job = spec(registry, "job_fail", container={"env": {"EXIT_CODE": "3"}})
    first = backend.create_container_group(job, client_token="t")
    try:
        ended = settle(backend, first.id)
        assert ended.status == GroupStatus.FAILED
        assert ended.containers[0].exit_code == 3
        again = backend.create_container_group(job, client_token="t")
        assert (again.id, again.status) == (first.id, GroupStatus.FAILED)
        assert again.containers[0].exit_code == 3
        assert again.containers[0].restart_count == ended.containers[0].restart_count
        assert [g.id for g in backend.list_container_groups()] == [first.id]
        assert runtime_ids(backend) == [first.id]
    finally:
        backend.delete_container_group(first.id)
    assert traces(first.id) == []


@pytest.mark.parametrize("why", ["another request", "deleted"])
def test_a_group_of_the_token_made_for_another_request_or_deleted_gives_way(
    backend, registry, why: str
) -> None:
    first = backend.create_container_group(
        spec(registry, "job_ok", container=SERVE), client_token="t"
    )
    second_spec = spec(registry, "job_ok", container={**SERVE, "env": {"MODE": "new"}})
    if why == "deleted":
        backend.delete_container_group(first.id)
        second_spec = spec(registry, "job_ok", container=SERVE)
    second = backend.create_container_group(second_spec, client_token="t")
    try:
        assert second.id != first.id
        assert [g.id for g in backend.list_container_groups()] == [second.id]
        assert runtime_ids(backend) == [second.id]
        with pytest.raises(NotFound):
            backend.get_container_group(first.id)
        assert traces(first.id) == []
        assert not (backend.groups_dir / first.id).exists()
    finally:
        backend.delete_container_group(second.id)
