from pathlib import Path

import pytest

from eci_imagecache.testing.registry import free_port
from tests.conftest import Registry, missing

from .pulumi_cli import REPO, Stack, find_pulumi_bin


@pytest.fixture(scope="session")
def pulumi_bin() -> Path:
    found = find_pulumi_bin()
    if found is None:
        missing("no Pulumi CLI: run scripts/install-pulumi-cli.sh")
    return found


@pytest.fixture
def quickstart(pulumi_bin: Path, tmp_path: Path, registry: Registry) -> Stack:
    """The quickstart stack, initialized, pointed at the test registry."""
    stack = Stack(project_dir=REPO / "examples" / "quickstart", work=tmp_path)
    # A free port: at 127.0.0.1 nothing may answer on it (the web server is at its own address).
    return stack.init({"registry": registry.host, "serverPort": str(free_port())})


@pytest.fixture
def example(pulumi_bin: Path, tmp_path: Path):
    """A stack of ``examples/<name>``, initialized with the given config."""

    def make(
        name: str, config: dict[str, str] | None = None, secrets: dict[str, str] | None = None
    ) -> Stack:
        return Stack(project_dir=REPO / "examples" / name, work=tmp_path).init(config, secrets)

    return make
