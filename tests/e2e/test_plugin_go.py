"""A Go program through the Automation API (examples/go-automation): its inline program
registers the plugin's resources by type token; the real CLI deploys them on the local
backend."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Registry, missing

from .pulumi_cli import REPO, Stack

pytestmark = pytest.mark.e2e
EXAMPLE = REPO / "examples" / "go-automation"


def go_env() -> dict[str, str]:
    """Go's module and build caches beside the CLI's (scripts/install-pulumi-cli.sh)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "eci-imagecache"
    return {
        "GOMODCACHE": os.environ.get("GOMODCACHE") or str(cache / "go" / "mod"),
        "GOCACHE": os.environ.get("GOCACHE") or str(cache / "go" / "build"),
        "GOFLAGS": "-mod=mod -buildvcs=false",
        "CGO_ENABLED": "0",
    }


@pytest.fixture(scope="session")
def go_program(pulumi_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("go") is None:
        missing("Go is not installed (scripts/install-pulumi-cli.sh needs it too)")
    program = tmp_path_factory.mktemp("go") / "go-automation"
    subprocess.run(
        # The CLI's build flags: its compiled packages in the build cache are reused.
        ["go", "build", "-trimpath", "-tags", "osusergo,grpcnotrace", "-o", str(program), "."],
        cwd=EXAMPLE,
        env={**os.environ, **go_env()},
        check=True,
        timeout=1800,
    )
    return program


def test_go_automation_program_creates_updates_and_destroys(
    go_program: Path, tmp_path: Path, registry: Registry
) -> None:
    stack = Stack(project_dir=EXAMPLE, work=tmp_path)
    (tmp_path / "state").mkdir()

    def run(action: str, size: int = 5) -> subprocess.CompletedProcess:
        env = {**stack.env, "REGISTRY": registry.host, "STACK": "test", "SIZE_GIB": str(size)}
        done = subprocess.run(
            [str(go_program), action], env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    outputs = json.loads(run("up").stdout)
    backend = stack.backend()
    assert outputs["cacheStatus"] == "Ready" and outputs["cacheSizeGib"] == 5
    assert outputs["webCache"] == outputs["cacheId"]
    [group] = backend.list_container_groups()
    assert group.cache_id == outputs["cacheId"]
    run("preview")  # expects no changes

    updated = json.loads(run("up", size=6).stdout)
    assert updated["cacheId"] == outputs["cacheId"] and updated["cacheSizeGib"] == 6
    assert backend.get_image_cache(outputs["cacheId"]).size_gib == 6
    assert [g.id for g in backend.list_container_groups()] == [group.id]
    run("preview", size=6)

    run("destroy")
    assert backend.list_image_caches() == [] and backend.list_container_groups() == []
