"""`eci-imagecache review` refuses input that is not a preview, with the documented exit code."""

import subprocess
import sys
from pathlib import Path

CLI = Path(sys.executable).parent / "eci-imagecache"


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CLI), *args], input=stdin, capture_output=True, text=True, timeout=60
    )


def test_text_output_of_a_preview_is_refused_as_not_json(tmp_path: Path) -> None:
    text = tmp_path / "preview.txt"
    text.write_text("Previewing update (dev):\n")
    result = run("review", str(text))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {text}: not JSON")


def test_json_that_is_not_a_preview_is_refused() -> None:
    result = run("review", "-", stdin='{"steps": "none"}')
    assert result.returncode == 2
    assert "not the output of `pulumi preview --json`" in result.stderr


def test_stack_outputs_are_not_taken_for_a_preview_without_changes() -> None:
    # `pulumi stack output --json` and `pulumi stack export` are objects too.
    for text in ('{"cache_id": "imc-1", "build_plan": "2 images"}', '{"version": 3}', "{}"):
        result = run("review", "-", stdin=text)
        assert result.returncode == 2, text
        assert "no steps and no change summary" in result.stderr


def test_a_failed_preview_is_never_reviewed_as_clean() -> None:
    failed = (
        '{"changeSummary": {}, "diagnostics": [{"urn": "urn:pulumi:dev::p::t::cache",'
        ' "message": "sizeGib: must be at least 1", "severity": "error"},'
        ' {"message": "error: preview failed", "severity": "error"}]}'
    )
    result = run("review", "-", stdin=failed)
    assert result.returncode == 0
    assert "**The preview failed** (2 error(s))" in result.stdout
    assert "- `cache`: sizeGib: must be at least 1" in result.stdout
    assert "No image cache or container group changes" not in result.stdout


def test_an_output_path_that_cannot_be_written_is_a_one_line_error(tmp_path: Path) -> None:
    target = tmp_path / "absent" / "review.md"
    result = run("review", "-", "-o", str(target), stdin='{"changeSummary": {}}')
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: cannot write {target}: No such file or directory"


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = run("review", str(tmp_path / "absent.json"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr


def test_a_preview_without_our_resources_says_so() -> None:
    result = run("review", "-", stdin='{"steps": [{"op": "same", "urn": "u", "newState": {}}]}')
    assert result.returncode == 0
    assert "No image cache or container group changes." in result.stdout
