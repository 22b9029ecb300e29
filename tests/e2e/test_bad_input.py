"""A program with a malformed property fails `pulumi preview` (the real CLI) with one line that
names the property, no Python traceback, and nothing made."""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import Registry

from .pulumi_cli import Stack

pytestmark = pytest.mark.e2e

PROGRAM = textwrap.dedent(
    """
    import pulumi

    from eci_imagecache.dynamic import ContainerArgs, ContainerGroup

    config = pulumi.Config()
    image = config.require("image")
    if config.require("case") == "bare-image":
        # A bare image where a container belongs (was: AttributeError in the program).
        ContainerGroup("bad", containers=[image])
    else:
        # Two containers of one name (was: accepted, then sqlite3.IntegrityError at create).
        ContainerGroup("bad", containers=[
            ContainerArgs(name="web", image=image, ports=[8080]),
            ContainerArgs(name="web", image=image),
        ])
    """
)


def test_a_malformed_property_fails_the_preview_in_one_line(
    pulumi_bin: Path, tmp_path: Path, registry: Registry
) -> None:
    project = tmp_path / "bad-input"
    project.mkdir()
    (project / "__main__.py").write_text(PROGRAM)
    (project / "Pulumi.yaml").write_text(
        "name: eci-bad-input\n"
        "runtime:\n  name: python\n  options:\n"
        f"    toolchain: pip\n    virtualenv: {Path(sys.executable).parents[1]}\n"
    )
    image = registry.ref("demo/web:1.0")
    stack = Stack(project_dir=project, work=tmp_path).init({"image": image, "case": "bare-image"})

    expected = {
        "bare-image": r"item 0 is '[^']*demo/web:1\.0', not a container",
        "twins": r"containers\[1\]\.name: 'web' is already the name of containers\[0\]",
    }
    for case, reason in expected.items():
        stack.run("config", "set", "case", case)
        preview = stack.run("preview", check=False)
        output = preview.stdout + preview.stderr
        assert preview.returncode != 0, output
        assert "Traceback" not in output and "AttributeError" not in output
        # The CLI shows the error as it happens and again among the diagnostics: one problem.
        problems = {
            line[line.index("error: ") :] for line in output.splitlines() if "has a problem" in line
        }
        assert len(problems) == 1, output
        [problem] = problems
        assert re.match(
            r"error: pulumi-python:dynamic/eci:ContainerGroup resource 'bad': "
            r"property containers value .* has a problem: ",
            problem,
        ), problem
        assert re.search(reason, problem), problem
    assert stack.backend().list_container_groups() == []
