"""`eci-imagecache review` on the JSON of a real `pulumi preview`, run as the CI example runs it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from eci_imagecache.cli.review import review_preview

from ..conftest import Registry
from .pulumi_cli import REPO, Stack

pytestmark = pytest.mark.e2e

WORKFLOW = REPO / "examples" / "ci" / "preview-review.yml"

# Phase 1 is deployed; phase 2 is what the pull request proposes: web-cache rebuilt with a new
# image, tools-cache updated in place (its retention dropped), legacy-cache and the batch group
# deleted, the api group replaced (any change to a group replaces it), and a new group that
# matches automatically with pull policy Always.
PROGRAM = textwrap.dedent(
    """
    import pulumi
    from eci_imagecache.dynamic import (
        ContainerArgs, ContainerGroup, ContainerGroupArgs, ImageCache, ImageCacheArgs,
    )

    config = pulumi.Config()
    registry = config.require("registry")
    phase = config.require_int("phase")
    web_version = "1.0" if phase == 1 else "1.1"

    web = ImageCache("web-cache", ImageCacheArgs(
        images=[f"{registry}/demo/web:{web_version}", f"{registry}/demo/worker:1.0"],
        layer_reuse=True, retention_days=7,
    ))
    tools = ImageCache("tools-cache", ImageCacheArgs(
        images=[f"{registry}/demo/tools:1.0"], retention_days=30 if phase == 1 else None,
    ))
    ContainerGroup("api", ContainerGroupArgs(
        containers=[ContainerArgs(
            name="web", image=f"{registry}/demo/web:1.0", env={"PHASE": str(phase)},
        )],
        cache_id=web.id,
    ))
    if phase == 1:
        ImageCache("legacy-cache", ImageCacheArgs(
            images=[f"{registry}/demo/worker:1.0"], retention_days=7,
        ))
        ContainerGroup("batch", ContainerGroupArgs(
            containers=[ContainerArgs(name="worker", image=f"{registry}/demo/worker:1.0")],
            cache_id=web.id,
        ))
    else:
        ContainerGroup("new-api", ContainerGroupArgs(
            containers=[ContainerArgs(
                name="web", image=f"{registry}/demo/web:1.1", image_pull_policy="Always",
            )],
            cache="auto-create", extra_ephemeral_storage_gib=20,
        ), opts=pulumi.ResourceOptions(depends_on=[web]))
    """
)


def workflow_step(step_id: str) -> str:
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["review"]["steps"]
    return next(s["run"] for s in steps if s.get("id") == step_id)


@pytest.fixture
def platform(pulumi_bin: Path, tmp_path: Path, registry: Registry) -> Stack:
    """A stack of two caches and groups, deployed (phase 1), in a project of its own."""
    project = tmp_path / "platform"
    project.mkdir()
    (project / "__main__.py").write_text(PROGRAM)
    (project / "Pulumi.yaml").write_text(
        "name: eci-platform\n"
        "runtime:\n  name: python\n  options:\n"
        f"    toolchain: pip\n    virtualenv: {Path(sys.executable).parents[1]}\n"
    )
    # The stack's config lives in the project, where a plain `pulumi preview --stack` finds it.
    stack = Stack(project_dir=project, work=project).init({"registry": registry.host, "phase": "1"})
    stack.run("up", "--yes", "--skip-preview")
    stack.run("config", "set", "phase", "2")
    return stack


def run_workflow_step(stack: Stack, step_id: str) -> subprocess.CompletedProcess:
    """A step's `run` script, as the CI runner would run it (bash -e), in the project."""
    env = {**stack.env, "PULUMI_STACK": stack.name, "POLICY_PACK": str(policy_pack())}
    return subprocess.run(
        ["bash", "-e", "-c", workflow_step(step_id)],
        cwd=stack.project_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def policy_pack() -> Path:
    return REPO / "examples" / "policy" / "run-policy-pack"


def test_review_of_a_real_preview_names_every_change_its_build_and_cost(
    platform: Stack, registry: Registry
) -> None:
    # Prices from a file named in stack config, as a user would override the default table.
    prices = platform.project_dir / "prices.yaml"
    prices.write_text("ephemeralGibHour: 0.001\nregion: test-region\nasOf: test prices\n")
    platform.run("config", "set", "eci:pricesFile", str(prices))
    preview = run_workflow_step(platform, "preview")
    assert preview.returncode == 0, preview.stderr
    data = json.loads((platform.project_dir / "preview.json").read_text())

    review = review_preview(data)
    caches = {c.name: c for c in review.caches}
    groups = {g.name: g for g in review.groups}
    assert {n: c.action for n, c in caches.items()} == {
        "web-cache": "rebuild",
        "tools-cache": "update",
        "legacy-cache": "delete",
    }
    assert {n: g.action for n, g in groups.items()} == {
        "api": "replace",
        "new-api": "create",
        "batch": "delete",
    }
    assert groups["api"].cache == "explicit: " + caches["web-cache"].cache_id

    # The rebuild fetches only the new image's own layer: the rest is in the cache already.
    assert "fetch " in caches["web-cache"].build_plan and "reuse " in caches["web-cache"].build_plan
    assert caches["web-cache"].build_once > 0
    assert caches["tools-cache"].build_once == 0 and caches["tools-cache"].build_plan is None
    assert caches["legacy-cache"].monthly_delta < 0
    # The new group: the cache it will use (rebuilt in the same update, which it waits for),
    # and its extra storage at the vendor's price.
    assert groups["new-api"].cache.startswith("will use web-cache (being built in this update)")
    assert groups["new-api"].extra_storage_gib == 20
    assert groups["new-api"].monthly_delta == pytest.approx(20 * 0.001 * 730)
    assert groups["batch"].cache.startswith("was using web-cache")
    assert review.one_off == pytest.approx(caches["web-cache"].build_once)
    assert review.monthly == pytest.approx(
        sum(c.monthly_delta for c in review.caches) + groups["new-api"].monthly_delta
    )

    result = run_workflow_step(platform, "review")
    assert result.returncode == 0, result.stderr
    markdown = (platform.project_dir / "review.md").read_text()
    assert "**Estimated cost change** (an estimate)" in markdown
    assert f"/demo/web:1.1, -{registry.host}/demo/web:1.0" in markdown
    assert "| `web-cache` | rebuild: images +" in markdown
    assert "| `tools-cache` | update: retention_days 30 -> None |" in markdown
    assert "| `legacy-cache` | delete |" in markdown
    assert "| `new-api` | create | will use web-cache (being built in this update)" in markdown
    assert "| `batch` | delete | was using web-cache" in markdown
    assert "| `api` | replace | explicit: imc-" in markdown

    # The same review as data, for tools.
    as_json = subprocess.run(
        [str(Path(sys.executable).parent / "eci-imagecache"), "--json", "review", "preview.json"],
        cwd=platform.project_dir,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(as_json.stdout) == review.model_dump(mode="json")
    assert "cache `tools-cache` has no `retention_days`" in markdown
    assert "group `new-api` matches caches automatically but pulls with `Always` (web)" in markdown
    assert "test-region list prices, test prices" in markdown
    assert "+USD 14.60/month" in markdown  # 20 GiB x 0.001 USD/GiB-hour x 730 hours


def test_a_bad_price_fails_the_preview_naming_it(quickstart: Stack) -> None:
    quickstart.run("config", "set", "--path", "eci:prices.snapshotGibMonth", "cheap")
    result = quickstart.run("preview", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "eci:prices: prices: snapshotGibMonth: Input should be a valid number" in output
    assert "Traceback" not in output
    # A price file that is not there, or that holds an infinite price, names the file.
    missing = quickstart.work / "nope.yaml"
    quickstart.run("config", "rm", "--path", "eci:prices.snapshotGibMonth")
    quickstart.run("config", "set", "eci:pricesFile", str(missing))
    result = quickstart.run("preview", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"eci:pricesFile {missing}: No such file or directory" in output
    assert "Traceback" not in output
    missing.write_text("snapshotGibMonth: 1e400\nasOf: 2026-11-01\n")
    result = quickstart.run("preview", check=False)
    output = result.stdout + result.stderr
    assert f"eci:pricesFile {missing}: prices: snapshotGibMonth" in output
    assert "Traceback" not in output
