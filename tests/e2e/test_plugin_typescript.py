"""A TypeScript program (examples/typescript) with the SDK generated from the plugin's schema,
under the real CLI and the Node.js language host built by scripts/install-language-hosts.sh,
on the local backend."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Registry, missing

from .pulumi_cli import REPO, Stack

pytestmark = pytest.mark.e2e
EXAMPLE = REPO / "examples" / "typescript"


@pytest.fixture(scope="session")
def typescript_project(pulumi_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example with its generated SDK and its npm packages, outside the repository."""
    if not (pulumi_bin / "pulumi-language-nodejs").is_file():
        missing("no Node.js language host: run scripts/install-language-hosts.sh")
    if shutil.which("npm") is None or shutil.which("go") is None:
        missing("npm and Go are needed: run scripts/install-system-deps.sh")
    project = tmp_path_factory.mktemp("typescript") / "project"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("node_modules", "sdk"))
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "eci-imagecache"
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        "PULUMI_HOME": str(project.parent / "pulumi-home"),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "npm_config_cache": str(cache / "npm"),
    }
    subprocess.run(
        [str(REPO / "scripts" / "gen-nodejs-sdk.sh"), str(project / "sdk")],
        env=env,
        check=True,
        timeout=1800,
        capture_output=True,
    )
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=project,
        env=env,
        check=True,
        timeout=900,
    )
    return project


def test_typescript_program_creates_updates_and_destroys(
    typescript_project: Path, tmp_path: Path, registry: Registry
) -> None:
    stack = Stack(project_dir=typescript_project, work=tmp_path).init({"registry": registry.host})
    stack.run("up", "--yes", "--skip-preview")
    outputs = stack.outputs()
    backend = stack.backend()
    assert outputs["cacheStatus"] == "Ready" and outputs["cacheSizeGib"] == 5
    assert outputs["webCache"] == outputs["cacheId"]
    [group] = backend.list_container_groups()
    assert group.cache_id == outputs["cacheId"]
    stack.run("preview", "--expect-no-changes")

    stack.run("config", "set", "sizeGib", "6")
    stack.run("up", "--yes", "--skip-preview")
    after = stack.outputs()
    assert after["cacheId"] == outputs["cacheId"] and after["cacheSizeGib"] == 6
    assert [g.id for g in backend.list_container_groups()] == [group.id]
    stack.run("preview", "--expect-no-changes")

    stack.run("destroy", "--yes", "--skip-preview")
    assert backend.list_image_caches() == [] and backend.list_container_groups() == []
