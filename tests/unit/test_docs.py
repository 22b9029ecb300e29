"""The documentation can be trusted: README.md is a map of at most 200 lines whose every link
resolves (the file exists, and so does the heading an anchor names); every code block of the
README and docs/ is either run here (programs under Pulumi's mocks, `eci-imagecache` commands
through the command's own argument parser) or marked as a sample (``<!-- sample -->`` on the line
before it)."""

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SAMPLE = "<!-- sample -->"
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    text: str
    sample: bool

    def __str__(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line} ({self.lang or 'no language'})"


def blocks(page: Path) -> list[Block]:
    found, lines = [], page.read_text().splitlines()
    at = 0
    while at < len(lines):
        fence = re.match(r"^(```+)(\S*)\s*$", lines[at])
        if not fence:
            at += 1
            continue
        end = next(i for i in range(at + 1, len(lines)) if lines[i].startswith(fence.group(1)))
        sample = at > 0 and lines[at - 1].strip() == SAMPLE
        found.append(Block(page, at + 1, fence.group(2), "\n".join(lines[at + 1 : end]), sample))
        at = end + 1
    return found


ALL = [b for page in PAGES for b in blocks(page)]
PROGRAMS = [b for b in ALL if not b.sample and b.lang == "python"]


def commands(block: Block) -> list[str]:
    """The command lines of a console block (comments and pipes' right sides left out)."""
    lines = [line.split(" #")[0].split(" | ")[0].strip() for line in block.text.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


COMMANDS = [(b, line) for b in ALL if not b.sample and b.lang == "console" for line in commands(b)]


def heading_anchors(page: Path) -> set[str]:
    """The anchors of a Markdown page's headings, as GitHub and MkDocs make them."""
    anchors = set()
    in_code = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading and not in_code:
            text = re.sub(r"[`*_]", "", heading.group(1)).lower()
            anchors.add(re.sub(r"\s+", "-", re.sub(r"[^\w\s-]", "", text)).strip("-"))
    return anchors


def test_the_readme_is_a_map_of_at_most_200_lines() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) <= 200


def test_every_link_in_the_readme_resolves() -> None:
    readme = REPO / "README.md"
    broken = []
    for target in LINK.findall(readme.read_text()):
        if re.match(r"^[a-z]+:", target):  # https:, mailto:: not ours to check offline
            continue
        path, _, anchor = target.partition("#")
        file = (readme.parent / path).resolve() if path else readme
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and anchor not in heading_anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.relative_to(REPO)}")
    assert not broken


def test_every_block_is_run_here_or_marked_as_a_sample() -> None:
    run_here = ("python", "console")
    unmarked = [str(b) for b in ALL if not b.sample and b.lang not in run_here]
    unmarked += [
        f"{b}: {line!r} is not an eci-imagecache command (mark the block {SAMPLE})"
        for b, line in COMMANDS
        if not line.startswith("eci-imagecache ")
    ]
    assert not unmarked


class Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.types: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.types.append(args.typ)
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


@pytest.mark.parametrize("block", PROGRAMS, ids=str)
def test_every_program_runs_under_pulumis_mocks(block: Block) -> None:
    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project="docs", stack="test", preview=False)
    pulumi.runtime.config.set_all_config({"docs:registryPassword": "docs-password"})

    @pulumi.runtime.test
    def run() -> None:
        exec(compile(block.text, str(block), "exec"), {"__name__": "__main__"})

    run()
    assert any(t.endswith(("eci:ImageCache", "eci:ContainerGroup")) for t in mocks.types)


@pytest.mark.parametrize(
    "line", [line for _, line in COMMANDS if line.startswith("eci-imagecache ")]
)
def test_every_command_names_a_command_and_options_that_exist(line: str) -> None:
    """Run as users run it, with --help added (so nothing is done): an unknown command or
    option fails."""
    args = shlex.split(line.replace("[", "").replace("]", ""))[1:]
    result = subprocess.run(
        [sys.executable, "-m", "eci_imagecache.cli.main", *args, "--help"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
