"""The policy pack under the real Pulumi CLI: `pulumi preview --policy-pack`."""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import pytest

from ..conftest import Registry
from .pulumi_cli import REPO, Stack

pytestmark = pytest.mark.e2e

POLICY_PACK = REPO / "examples" / "policy" / "run-policy-pack"

# One resource for each recommendation of the vendor that the pack checks.
BAD_PROGRAM = textwrap.dedent(
    """
    import pulumi
    from eci_imagecache.dynamic import (
        ContainerArgs, ContainerGroup, ContainerGroupArgs, ImageCache, ImageCacheArgs,
    )

    registry = pulumi.Config().require("registry")
    ImageCache("no-retention", ImageCacheArgs(images=[f"{registry}/demo/web:1.0"]))
    ContainerGroup("too-many", ContainerGroupArgs(containers=[
        ContainerArgs(name=f"c{i}", image=f"{registry}/demo/web:v{i}") for i in range(21)
    ]))
    ContainerGroup("always", ContainerGroupArgs(containers=[
        ContainerArgs(name="web", image=f"{registry}/demo/web:1.0", image_pull_policy="Always"),
    ], cache="auto"))
    ContainerGroup("private", ContainerGroupArgs(containers=[
        ContainerArgs(name="app", image="registry.example.com/team/app:1.0"),
    ], cache="none"))
    ContainerGroup("cloud", ContainerGroupArgs(containers=[
        ContainerArgs(name="web", image="nginx:1.25"),
    ], cache="none", backend="alicloud", region="cn-hangzhou"))
    """
)


def violations(output: str) -> dict[str, set[str]]:
    """Policy name -> the resources it reported, from the preview's policy section."""
    found: dict[str, set[str]] = {}
    for match in re.finditer(r"- \[(advisory|mandatory)\]\s+([\w-]+)\s+\(([^)]*)\)", output):
        level, name, where = match.groups()  # where: "<type>: <resource name>"
        found.setdefault(f"{level}:{name}", set()).add(where.rsplit(": ", 1)[-1].strip())
    return found


@pytest.fixture
def bad_stack(pulumi_bin: Path, tmp_path: Path, registry: Registry) -> Stack:
    project = tmp_path / "bad"
    project.mkdir()
    (project / "__main__.py").write_text(BAD_PROGRAM)
    (project / "Pulumi.yaml").write_text(
        "name: eci-policy-bad\n"
        "runtime:\n  name: python\n  options:\n"
        f"    toolchain: pip\n    virtualenv: {Path(sys.executable).parents[1]}\n"
    )
    # The 21 images of "too-many" exist: a missing image fails the preview before any policy.
    from eci_imagecache.testing.registry import make_layer

    builder = registry.builder()
    try:
        for i in range(21):
            builder.push_image("demo/web", f"v{i}", [make_layer(f"policy-v{i}", 1024)])
    finally:
        builder.close()
    # The group on the alicloud backend is only previewed (no cache to match): nothing reaches
    # the cloud, and no cloud credentials are needed.
    stack = Stack(project_dir=project, work=tmp_path / "work")
    return stack.init({"registry": registry.host})


def test_the_pack_reports_each_violation_of_a_bad_stack(bad_stack: Stack) -> None:
    result = bad_stack.run("preview", "--policy-pack", str(POLICY_PACK), check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output  # mandatory violations stop the preview
    assert violations(output) == {
        "advisory:manual-cache-retention": {"no-retention"},
        "mandatory:at-most-20-images": {"too-many"},
        "advisory:automatic-matching-pull-policy": {"always"},
        "mandatory:private-registry-credentials": {"private"},
        "advisory:public-images-need-internet-access": {"cloud"},
    }, output
    assert "21 images: the cache created for this group holds at most 20" in output
    assert "private registry registry.example.com" in output
    assert "the stack has no NAT gateway or EIP" in output
    assert "can't run policy" not in output


def test_the_pack_passes_the_quickstart_with_a_retention_period(quickstart: Stack) -> None:
    quickstart.run("config", "set", "retentionDays", "7")
    result = quickstart.run("preview", "--policy-pack", str(POLICY_PACK))
    assert "Policies:" in result.stdout and "eci-imagecache@v0.1.0" in result.stdout
    assert violations(result.stdout) == {}, result.stdout
    # Every policy ran: none was skipped for a value unknown until deploy (the explicit group's
    # cache id is, on a first preview).
    assert "can't run policy" not in result.stdout + result.stderr
