"""The seams a newcomer relies on, read from the source: the factory is the only place outside
``backends/`` that reaches a backend's classes, and the command line's imports point one way."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "provider" / "eci_imagecache"
# The backends' own packages: only backends/ and its factory may import them.
BACKEND_CLASSES = (
    "eci_imagecache.backends.local",
    "eci_imagecache.backends.alicloud",
    "eci_imagecache.backends.emulator",
)
# Outside backends/, code that ships with the package but exists to test it.
TEST_SUPPORT = {"testing"}


def imports_of(path: Path) -> set[str]:
    """The modules ``path`` imports (relative imports resolved), at any depth in the file."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def modules_outside_backends() -> list[Path]:
    return [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] not in {"backends", *TEST_SUPPORT}
    ]


@pytest.mark.parametrize(
    "path", modules_outside_backends(), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_only_the_factory_names_backend_classes(path: Path) -> None:
    reached = sorted(
        name
        for name in imports_of(path)
        if name.startswith(BACKEND_CLASSES) or "alibabacloud" in name
    )
    assert reached == [], f"{path.name} should open backends through backends.factory"


def test_the_command_lines_modules_import_each_other_one_way() -> None:
    cli = PACKAGE / "cli"
    # What each command-line module may import of the others: main is the root.
    allowed = {
        "common": set(),
        "tables": set(),
        "review": {"common"},
        "groups": {"common"},
        "main": {"common", "groups", "review", "tables"},
    }
    for path in sorted(cli.glob("*.py")):
        if path.stem == "__init__":
            continue
        siblings = {
            name.split(".")[2]
            for name in imports_of(path)
            if name.startswith("eci_imagecache.cli.") and name.count(".") >= 2
        }
        assert siblings <= allowed[path.stem], f"cli/{path.name} imports {sorted(siblings)}"
