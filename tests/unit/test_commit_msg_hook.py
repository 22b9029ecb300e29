"""The commit-msg hook kept in scripts/git-hooks, run by real git in a scratch repository the way
`make setup` installs it: subjects as "area: what changed" in at most 72 characters, a blank line
before the body."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GOOD = "runtime: refuse links while unpacking layer metadata"


def git(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "GIT_EDITOR": "false", **env},
    )


def copy_setup(into: Path) -> None:
    """What `make git-hooks` needs from the repository: the Makefile, the hook, the template."""
    (into / "scripts/git-hooks").mkdir(parents=True)
    for name in ("Makefile", "scripts/git-hooks/commit-msg", ".gitmessage"):
        shutil.copy2(REPO / name, into / name)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A git checkout set up by `make git-hooks`, with one file staged."""
    copy_setup(tmp_path)
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "config", "user.name", "Hook Test")
    git(tmp_path, "config", "user.email", "hook@example.invalid")
    subprocess.run(["make", "-s", "git-hooks"], cwd=tmp_path, check=True, capture_output=True)
    (tmp_path / "file.txt").write_text("one\n")
    git(tmp_path, "add", "file.txt")
    return tmp_path


def commit(checkout: Path, message: str) -> subprocess.CompletedProcess[str]:
    return git(checkout, "commit", "-q", "-m", message)


def test_make_setup_points_git_at_the_hook_and_the_template(checkout: Path) -> None:
    assert git(checkout, "config", "core.hooksPath").stdout.strip() == "scripts/git-hooks"
    assert git(checkout, "config", "commit.template").stdout.strip() == ".gitmessage"


def test_a_subject_in_the_convention_with_a_body_is_committed(checkout: Path) -> None:
    message = f"{GOOD}\n\nA member file named ../x is refused; 3 tests in test_layers.py."
    result = commit(checkout, message)
    assert result.returncode == 0, result.stderr
    assert git(checkout, "log", "-1", "--format=%B").stdout.strip() == message


def test_a_subject_of_exactly_72_characters_is_committed(checkout: Path) -> None:
    subject = "docs: " + "x" * 66
    assert len(subject) == 72
    assert commit(checkout, subject).returncode == 0


def test_a_subject_over_72_characters_is_refused_with_its_length(checkout: Path) -> None:
    subject = "docs: " + "x" * 67
    result = commit(checkout, subject)
    assert result.returncode != 0
    assert "73 characters; at most 72" in result.stderr
    assert git(checkout, "rev-parse", "--verify", "-q", "HEAD").returncode != 0  # nothing made


@pytest.mark.parametrize(
    "subject",
    [
        "The providers' read names their backend",  # a sentence, no area
        "runtime refuse links",  # no colon
        "Runtime: refuse links",  # the area is lower case
        "runtime:refuse links",  # a space after the colon
    ],
)
def test_a_subject_without_an_area_is_refused(checkout: Path, subject: str) -> None:
    result = commit(checkout, subject)
    assert result.returncode != 0
    assert '"area: what changed"' in result.stderr


@pytest.mark.parametrize("subject", ["dynamic/server: keep a failed group", "docs, readme: a map"])
def test_areas_may_be_paths_or_lists(checkout: Path, subject: str) -> None:
    assert commit(checkout, subject).returncode == 0


def test_a_body_must_follow_a_blank_line(checkout: Path) -> None:
    result = commit(checkout, f"{GOOD}\nthe body starts at once")
    assert result.returncode != 0
    assert "second line is not blank" in result.stderr


def test_merges_and_reverts_git_writes_pass(checkout: Path) -> None:
    assert commit(checkout, GOOD).returncode == 0
    assert git(checkout, "revert", "--no-edit", "HEAD").returncode == 0
    assert git(checkout, "log", "-1", "--format=%s").stdout.startswith('Revert "runtime:')


def test_the_template_is_offered_and_its_comments_are_not_counted(checkout: Path) -> None:
    """An editor that puts a subject above the template: git strips the template's comments,
    and the hook judges only what will be recorded."""
    seen = checkout / "seen.txt"
    editor = f'sh -c \'cp "$1" {seen}; printf "%s\\n" "{GOOD}" | cat - {seen} > "$1"\' -'
    (checkout / "sub").mkdir()  # from a subdirectory: both paths are relative to the work tree
    result = git(checkout / "sub", "commit", "-q", GIT_EDITOR=editor)
    assert result.returncode == 0, result.stderr
    assert "# area: what changed (at most 72 characters)" in seen.read_text()
    assert git(checkout, "log", "-1", "--format=%B").stdout.strip() == GOOD


def test_make_git_hooks_outside_a_checkout_changes_nothing(tmp_path: Path) -> None:
    parent = tmp_path / "parent"
    project = parent / "vendored"
    project.mkdir(parents=True)
    copy_setup(project)
    git(parent, "init", "-q")
    # Inside another repository: its config is left alone.
    subprocess.run(["make", "-s", "git-hooks"], cwd=project, check=True)
    assert git(parent, "config", "core.hooksPath").stdout == ""
    # Not in a repository at all (a tarball): nothing to do, no error.
    shutil.rmtree(parent / ".git")
    result = subprocess.run(["make", "-s", "git-hooks"], cwd=project, capture_output=True)
    assert result.returncode == 0
    assert not (project / ".git").exists()
