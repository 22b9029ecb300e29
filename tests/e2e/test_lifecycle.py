"""What CI does every day, under the real CLI: interrupted deployments, settings that differ
between jobs, wrong inputs, drift, and previews that must say what `up` will do."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eci_imagecache.backends.local.view import LocalView
from eci_imagecache.engine.models import CacheStatus, ImageCacheSpec
from eci_imagecache.testing.registry import free_port
from tests.support.fault_proxy import Fault, FaultProxy

from ..conftest import REGISTRY_USER, Registry
from .pulumi_cli import REPO, Stack, descendants

pytestmark = pytest.mark.e2e
QUICKSTART = REPO / "examples" / "quickstart"


def ids(state: dict) -> list[tuple[str, str | None]]:
    return [(r["urn"], r.get("id")) for r in state["resources"]]


def no_traceback(result) -> None:
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr


@pytest.fixture
def slow_registry(registry: Registry) -> Iterator[FaultProxy]:
    """The test registry behind a proxy that serves blobs slowly: builds take seconds."""
    proxy = FaultProxy(registry.server.url, [Fault(r"GET /v2/.*/blobs/", slow_body=0.02)])
    yield proxy
    proxy.close()


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def building(backend: LocalView) -> bool:
    return any(c.status == CacheStatus.CREATING for c in backend.list_image_caches())


class EndedFirst(AssertionError):
    """The command ended before the kill point was reached."""


def start_up_and_kill_mid_build(
    stack: Stack,
    whole_session: bool,
    until: Callable[[LocalView], bool] = building,
    command: str = "up",
    interval: float = 0.1,
) -> list[int]:
    """Start `pulumi up` (or ``command``), wait until ``until`` holds of the backend (by
    default: the cache is being built; asked every ``interval`` seconds), SIGKILL `pulumi`
    (and, with ``whole_session``, its process group). Returns the processes it had started
    that are left running: Pulumi starts its plugins (the provider too) in process groups of
    their own."""
    stack.backend()  # the store exists before the command starts
    backend = stack.view()  # polled read-only: no recovery racing the provider
    up = stack.start(command, "--yes", "--skip-preview")
    deadline = time.monotonic() + 300
    while not until(backend):
        if up.poll() is not None:
            raise EndedFirst((stack.work / "background.log").read_text())
        assert time.monotonic() < deadline, "the kill point was never reached"
        time.sleep(interval)
    left = descendants(up.pid)
    if whole_session:
        os.killpg(up.pid, signal.SIGKILL)
    else:
        os.kill(up.pid, signal.SIGKILL)
    up.wait()
    return [p for p in left if Path(f"/proc/{p}").exists()]


@pytest.mark.parametrize("whole_session", [False, True], ids=["pulumi-only", "whole-session"])
def test_sigkill_mid_build_then_up_ends_with_exactly_one_cache_in_state(
    pulumi_bin, tmp_path: Path, slow_registry: FaultProxy, whole_session: bool
) -> None:
    stack = Stack(project_dir=QUICKSTART, work=tmp_path).init({"registry": slow_registry.host})
    backend = stack.backend()
    left = start_up_and_kill_mid_build(stack, whole_session)
    try:
        # Either way the provider, in a process group of its own, finishes the build it had
        # begun (then ends, as checked below), and the next `up` adopts that cache.
        slow_registry.faults.clear()
        # The file backend keeps the dead run's lock: `pulumi cancel` is Pulumi's step for that.
        stack.run("cancel", "--yes")
        up = stack.run("up", "--yes", "--skip-preview")
        no_traceback(up)
        assert "pending operations" in up.stdout + up.stderr  # Pulumi's warning, kept as is
        caches = backend.list_image_caches()
        assert len(caches) == 1, caches
        assert caches[0].status == CacheStatus.READY
        out = stack.outputs()
        assert out["cache_id"] == caches[0].id
        assert out["explicit_match"] == caches[0].id
        # The interrupted create stays listed as pending until cleared; the cache is in state.
        stack.run("refresh", "--yes", "--skip-preview", "--clear-pending-creates")
        assert not stack.state().get("pending_operations")
        stack.run("preview", "--expect-no-changes")
        assert [c.id for c in backend.list_image_caches()] == [caches[0].id]
        stack.run("destroy", "--yes", "--skip-preview")
        assert backend.list_image_caches() == []
        # Our processes the killed `pulumi` left (its provider, which finished the build, and
        # the group supervisor it kept ready) end too.
        wait_until_ours_end(left)
    finally:
        kill_all(left)


OUR_PROCESSES = ("pulumi.dynamic", "eci_imagecache")  # the dynamic provider, group supervisors


def wait_until_ours_end(left: list[int], names: tuple[str, ...] = OUR_PROCESSES) -> None:
    """Our processes among ``left`` (those ``names`` name) end within a minute. (Pulumi's
    language host stays after a SIGKILL of the CLI alone: the CLI's plugin, not ours.)"""
    ours = [p for p in left if any(name in commands(p) for name in names)]
    deadline = time.monotonic() + 60
    while running := [commands(p) for p in ours if is_running(p)]:
        assert time.monotonic() < deadline, f"still running: {running}"
        time.sleep(0.2)


def is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def commands(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return str(pid)


SKIP_CHECKPOINTS = {"PULUMI_SKIP_CHECKPOINTS": "true"}  # Pulumi's: save only when a run ends


def in_state(state: dict, kind: str) -> list[str]:
    """The ids of the stack's resources of one of our types (ImageCache, ContainerGroup)."""
    return sorted(r["id"] for r in state.get("resources", []) if f"eci:{kind}::" in r["urn"])


def test_up_killed_with_skipped_checkpoints_saves_nothing_and_the_next_up_adopts_all_it_made(
    pulumi_bin, tmp_path: Path, slow_registry: FaultProxy
) -> None:
    """With `PULUMI_SKIP_CHECKPOINTS=true` Pulumi saves the stack only when a deployment ends.
    `pulumi up` of the quickstart, SIGKILLed once a cache and a container group exist in the
    backend, leaves a state that knows none of them, not even as pending creates. The next
    `up` creates every resource again with the same tokens (same resource, generation 0), and
    so adopts what the killed run made, groups whose containers failed included: one cache and
    one group per resource, all in state, nothing left over."""
    stack = Stack(project_dir=QUICKSTART, work=tmp_path, extra_env=SKIP_CHECKPOINTS).init(
        {"registry": slow_registry.host, "serverPort": str(free_port())}
    )
    backend = stack.backend()

    def a_cache_and_a_group(backend: LocalView) -> bool:
        return bool(backend.list_image_caches() and backend.list_container_groups())

    left = start_up_and_kill_mid_build(stack, whole_session=False, until=a_cache_and_a_group)
    try:
        slow_registry.faults.clear()
        stack.run("cancel", "--yes")  # the dead run's lock is taken with or without checkpoints
        killed = stack.state()
        assert killed.get("resources", []) == [] and not killed.get("pending_operations")
        # The killed run's provider finishes the hooks it was running, then ends: what it
        # leaves is all the killed run made.
        wait_until_ours_end(left, names=("pulumi.dynamic",))
        made_caches = {c.id for c in backend.list_image_caches()}
        made_groups = {g.id for g in backend.list_container_groups()}
        assert made_caches and made_groups

        up = stack.run("up", "--yes", "--skip-preview")
        no_traceback(up)
        assert "pending operations" not in up.stdout + up.stderr  # none was saved
        state = stack.state()
        caches, groups = in_state(state, "ImageCache"), in_state(state, "ContainerGroup")
        assert len(caches) == 1 and len(groups) == 4, ids(state)
        assert sorted(c.id for c in backend.list_image_caches()) == caches
        assert sorted(g.id for g in backend.list_container_groups()) == groups
        # Adopted, not made again: what the killed run made is what is in state.
        assert made_caches <= set(caches) and made_groups <= set(groups), (made_groups, groups)
        [cache_id] = caches
        out = stack.outputs()
        assert out["cache_id"] == out["explicit_match"] == cache_id
        assert out["auto_match"].startswith(f"{cache_id} (exact)")
        stack.run("preview", "--expect-no-changes")
        stack.run("destroy", "--yes", "--skip-preview")
        assert backend.list_image_caches() == [] and backend.list_container_groups() == []
        wait_until_ours_end(left)
    finally:
        kill_all(left)


def test_destroy_killed_with_skipped_checkpoints_then_destroy_again_leaves_nothing(
    quickstart: Stack,
) -> None:
    """A `pulumi destroy` SIGKILLed once it has deleted part of the stack saves nothing with
    `PULUMI_SKIP_CHECKPOINTS=true`: the state still lists every resource, the deleted ones too.
    The next destroy deletes what is left, takes what is gone as deleted, and ends without an
    error, leaving nothing."""
    quickstart.extra_env.update(SKIP_CHECKPOINTS)
    backend = quickstart.backend()
    seen: dict[str, list[str]] = {}

    def partly_deleted(backend: LocalView) -> bool:
        seen["caches"] = [c.id for c in backend.list_image_caches()]
        seen["groups"] = [g.id for g in backend.list_container_groups()]
        return len(seen["groups"]) < len(groups)

    # The groups go first, in parallel, within a second; the cache only once they are all gone.
    # That window is short: a destroy that ends before the poll sees it is made again.
    for _ in range(3):
        quickstart.run("up", "--yes", "--skip-preview")
        before = quickstart.state()
        groups = in_state(before, "ContainerGroup")
        try:
            left = start_up_and_kill_mid_build(
                quickstart,
                whole_session=False,
                until=partly_deleted,
                command="destroy",
                interval=0.005,
            )
            break
        except EndedFirst:
            continue
    else:
        pytest.fail("three destroys ended before one was seen part-way")
    try:
        assert seen["caches"] or seen["groups"], "the destroy had ended"
        quickstart.run("cancel", "--yes")
        killed = quickstart.state()
        assert ids(killed) == ids(before) and not killed.get("pending_operations")
        # The killed run's provider finishes the deletes it was running, then ends.
        wait_until_ours_end(left, names=("pulumi.dynamic",))
        destroy = quickstart.run("destroy", "--yes", "--skip-preview")
        no_traceback(destroy)
        assert quickstart.state().get("resources", []) == []
        assert backend.list_image_caches() == [] and backend.list_container_groups() == []
        wait_until_ours_end(left)
    finally:
        kill_all(left)


def test_import_pending_creates_does_not_adopt_and_up_does(
    pulumi_bin, tmp_path: Path, slow_registry: FaultProxy
) -> None:
    """`refresh --import-pending-creates URN ID` drops the pending create without recording the
    resource (CLI 3.274.1): the documented recovery is `pulumi up`, which adopts."""
    stack = Stack(project_dir=QUICKSTART, work=tmp_path).init({"registry": slow_registry.host})
    backend = stack.backend()
    left = start_up_and_kill_mid_build(stack, whole_session=False)
    try:
        slow_registry.faults.clear()
        stack.run("cancel", "--yes")
        pending = stack.state()["pending_operations"]
        urn = next(op["resource"]["urn"] for op in pending if op["type"] == "creating")
        cache_id = backend.list_image_caches()[0].id
        stack.run(
            "refresh",
            "--yes",
            "--skip-preview",
            "--import-pending-creates",
            urn,
            "--import-pending-creates",
            cache_id,
        )
        state = stack.state()
        assert urn not in [r["urn"] for r in state["resources"]]
        assert not state.get("pending_operations")
        stack.run("up", "--yes", "--skip-preview")
        assert [c.id for c in backend.list_image_caches()] == [cache_id]
        assert stack.outputs()["cache_id"] == cache_id
    finally:
        kill_all(left)


def test_another_data_dir_refuses_naming_both_and_plans_no_deletion(
    quickstart: Stack, tmp_path: Path
) -> None:
    quickstart.run("up", "--yes", "--skip-preview")
    cache_id = quickstart.outputs()["cache_id"]
    before = quickstart.state()["resources"]
    home, other = quickstart.work / "eci-data", tmp_path / "other"
    elsewhere = {"ECI_IMAGECACHE_HOME": str(other)}
    for command in (
        ("refresh", "--yes", "--skip-preview"),
        ("preview", "--refresh"),
        ("preview", "--diff"),
        ("destroy", "--yes", "--skip-preview"),
    ):
        result = quickstart.run(*command, check=False, env=elsewhere)
        assert result.returncode != 0, command
        text = result.stdout + result.stderr
        no_traceback(result)
        assert f"local backend at {home}" in text and f"local backend at {other}" in text
        if command[0] != "destroy":  # a destroy tries, and each delete refuses
            assert not re.search(r"to delete|deleting|- \d+ deleted", text), text
    assert ids(quickstart.state()) == ids({"resources": before})
    assert [c.id for c in quickstart.backend().list_image_caches()] == [cache_id]
    # The same through stack config: eci:dataDir is the setting CI jobs share.
    quickstart.run("config", "set", "eci:dataDir", str(other))
    assert quickstart.run("preview", check=False).returncode != 0
    quickstart.run("config", "set", "eci:dataDir", str(home))
    quickstart.run("preview", "--expect-no-changes")


def test_timeouts_are_settings_not_inputs(quickstart: Stack) -> None:
    quickstart.run("up", "--yes", "--skip-preview")
    quickstart.run("config", "set", "eci:operationTimeout", "60")
    preview = quickstart.run("preview", "--expect-no-changes", "--diff")
    assert "replace" not in preview.stdout
    bad = quickstart.run("config", "set", "eci:operationTimeout", "soon")
    assert bad.returncode == 0
    failed = quickstart.run("preview", check=False)
    assert failed.returncode != 0 and "eci:operationTimeout" in failed.stdout + failed.stderr
    no_traceback(failed)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"images": ["{registry}/demo/web:9.9", "{registry}/demo/worker:1.0"]},
            r"property images value .* has a problem: .*demo/web:9\.9",
        ),
        ({"sizeGib": "0"}, r"property size_gib value \{0\} has a problem"),
    ],
)
def test_cache_inputs_knowable_at_preview_fail_check_naming_the_property(
    quickstart: Stack, registry: Registry, config: dict, message: str
) -> None:
    for key, value in config.items():
        if isinstance(value, list):
            value = json.dumps([v.format(registry=registry.host) for v in value])
        quickstart.run("config", "set", key, value)
    preview = quickstart.run("preview", check=False)
    assert preview.returncode != 0
    assert re.search(message, preview.stdout + preview.stderr), preview.stdout
    no_traceback(preview)
    assert quickstart.backend().list_image_caches() == []


def test_private_registry_credentials_checked_at_preview(
    example, private_registry: Registry
) -> None:
    user, password = REGISTRY_USER
    # No credentials for a registry that needs them.
    stack = example("private-registry", {"registry": private_registry.host})
    stack.run("config", "set", "--secret", "password", "unused")
    preview = stack.run("preview", check=False)
    assert preview.returncode != 0
    assert re.search(
        rf"property credentials .* no credentials are given for {re.escape(private_registry.host)}",
        preview.stdout,
    ), preview.stdout
    no_traceback(preview)
    # The right ones: up. Then a wrong password, with nothing to rebuild, still fails check.
    stack.run("config", "set", "username", user)
    stack.run("config", "set", "--secret", "password", password)
    stack.run("up", "--yes", "--skip-preview")
    stack.run("config", "set", "--secret", "password", "not-the-password")
    preview = stack.run("preview", "--diff", check=False)
    assert preview.returncode != 0
    text = preview.stdout + preview.stderr
    assert "property credentials" in text and "check the username" in text, text
    assert "not-the-password" not in preview.stdout + preview.stderr
    no_traceback(preview)


@pytest.mark.parametrize(
    ("config", "prop", "message"),
    [
        ({"cacheId": "imc-00000000000000000000"}, "cache_id", "no image cache imc-0000"),
        ({"groupName": "Web_API"}, "name", "not a valid container group name"),
        ({"image": "{registry}/demo/nope:1.0"}, "containers", "demo/nope:1.0"),
    ],
)
def test_group_inputs_knowable_at_preview_fail_check_naming_the_property(
    example, registry: Registry, config: dict, prop: str, message: str
) -> None:
    values = {"image": registry.ref("demo/web:1.0"), **config}
    values = {k: v.format(registry=registry.host) for k, v in values.items()}
    stack = example("auto-match", values)
    preview = stack.run("preview", check=False)
    assert preview.returncode != 0
    assert re.search(
        rf"property {prop} value .* has a problem: .*{re.escape(message)}", preview.stdout
    )
    no_traceback(preview)


def test_group_naming_a_failed_cache_fails_check(example, registry: Registry, tmp_path) -> None:
    stack = example("auto-match", {"image": registry.ref("demo/web:1.0")})
    backend = stack.backend()
    proxy = FaultProxy(registry.server.url, [Fault(r"GET /v2/.*/blobs/", status=500)])
    try:
        with pytest.raises(Exception):  # noqa: B017 - the build fails, whatever its type
            backend.create_image_cache(
                ImageCacheSpec(name="broken", images=[f"{proxy.host}/demo/web:1.0"])
            )
    finally:
        proxy.close()
    failed = next(c for c in backend.list_image_caches() if c.name == "broken")
    stack.run("config", "set", "cacheId", failed.id)
    preview = stack.run("preview", check=False)
    assert re.search(r"property cache_id .* is not usable \(Failed", preview.stdout), preview.stdout
    no_traceback(preview)


def test_preview_after_drift_has_a_detailed_diff_and_says_what_up_does(
    quickstart: Stack, registry: Registry
) -> None:
    quickstart.run("up", "--yes", "--skip-preview")
    out = quickstart.outputs()
    backend = quickstart.backend()
    # Out of band: the cache now holds another image set (someone rebuilt it by hand).
    backend.update_image_cache(
        out["cache_id"],
        ImageCacheSpec(
            name="web-cache",
            images=[registry.ref("demo/web:1.1"), registry.ref("demo/worker:1.0")],
            eviction="LRU",
            layer_reuse=True,
        ),
    )
    quickstart.run("refresh", "--yes", "--skip-preview")
    preview = quickstart.run("preview", "--diff").stdout
    assert "~ pulumi-python:dynamic/eci:ImageCache: (update)" in preview
    assert re.search(r"~ images\s*:", preview), preview
    assert "rebuild the snapshot in place: images +" in preview
    assert re.search(r'~ build_plan\s*: .*=> "2 images, 6 blobs', preview), preview
    steps = json.loads(quickstart.run("preview", "--json").stdout)["steps"]
    cache_step = next(s for s in steps if s["urn"].endswith("ImageCache::web-cache"))
    assert cache_step["op"] == "update"
    assert cache_step["detailedDiff"]["images"]["kind"] == "update"
    assert set(cache_step["diffReasons"]) >= {"images"}
    up = quickstart.run("up", "--yes", "--skip-preview")
    assert "1 updated" in up.stdout
    cache = backend.get_image_cache(out["cache_id"])
    assert sorted(str(i) for i in cache.images) == sorted(
        [registry.ref("demo/web:1.0"), registry.ref("demo/worker:1.0")]
    )
    quickstart.run("preview", "--expect-no-changes")


def test_layer_reuse_toggle_plans_no_build_and_up_builds_nothing(quickstart: Stack) -> None:
    quickstart.run("up", "--yes", "--skip-preview")
    before = quickstart.outputs()
    quickstart.run("config", "set", "layerReuse", "false")
    preview = quickstart.run("preview", "--diff").stdout
    assert re.search(r"~ layer_reuse\s*: true => false", preview), preview
    assert "build_plan" not in preview
    assert '"update in place: layer_reuse True -> False"' in preview
    quickstart.run("up", "--yes", "--skip-preview")
    after = quickstart.outputs()
    assert after["build_plan"] == before["build_plan"]
    cache = quickstart.backend().get_image_cache(after["cache_id"])
    assert (
        cache.fetched_bytes
        == quickstart.backend().get_image_cache(before["cache_id"]).fetched_bytes
    )
    assert not cache.layer_reuse


def test_group_preview_counts_the_cache_built_in_the_same_update(quickstart: Stack) -> None:
    preview = quickstart.run("preview", "--diff").stdout
    assert "will use web-cache (being built in this update): exact" in preview, preview
    pending = [line for line in preview.splitlines() if "being built in this update" in line]
    assert not any("; created " in line for line in pending), pending  # not built yet
    quickstart.run("up", "--yes", "--skip-preview")
    out = quickstart.outputs()
    assert out["auto_match"].startswith(f"{out['cache_id']} (exact)")
