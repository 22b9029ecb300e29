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
    assert "no list of steps" in result.stderr


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = run("review", str(tmp_path / "absent.json"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr


def test_a_preview_without_our_resources_says_so() -> None:
    result = run("review", "-", stdin='{"steps": [{"op": "same", "urn": "u", "newState": {}}]}')
    assert result.returncode == 0
    assert "No image cache or container group changes." in result.stdout
