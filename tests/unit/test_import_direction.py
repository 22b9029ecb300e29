"""Imports point one way (DESIGN.md, "Layout"): every module of the package is parsed with
``ast`` and each of its imports (``import`` and ``from ... import``, absolute and relative, at
the top, inside functions or under ``TYPE_CHECKING``) is checked against the layers it may not
reach. A layer is the first name under ``eci_imagecache`` (``engine``, ``backends``, ...; the
top-level modules ``retry`` and ``database`` are the shared leaves)."""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import eci_imagecache

PACKAGE = "eci_imagecache"
PACKAGE_DIR = Path(eci_imagecache.__file__).parent

# Modules every layer may share: they import nothing of ours but each other.
SHARED_LEAVES = frozenset({"retry", "database"})
EVERYTHING = frozenset({"*"})  # every other layer of ours
NOTHING: frozenset[str] = frozenset()

# Per layer: the layers it may not import, those it may import all the same, and why (DESIGN.md,
# "Layout"). A layer not listed (plugin, components, cli, testing) may import any other.
RULES: dict[str, tuple[frozenset[str], frozenset[str], str]] = {
    "engine": (
        EVERYTHING,
        NOTHING,
        "the engine is pure domain logic: everything calls it, it calls nothing",
    ),
    "registry": (
        frozenset({"backends", "dynamic", "plugin", "cli", "components", "testing"}),
        NOTHING,
        "the registry client is used by the backends, never the other way",
    ),
    "runtime": (
        EVERYTHING,
        SHARED_LEAVES,
        "the runtime imports nothing else of the project but the shared leaf modules",
    ),
    "backends": (
        frozenset({"dynamic", "plugin", "cli", "components", "testing"}),
        NOTHING,
        "the backends are used by the providers and the CLI, never the other way",
    ),
    "dynamic": (
        frozenset({"plugin", "cli", "components", "testing"}),
        NOTHING,
        "the dynamic providers are wrapped by the plugin and the components, never the other way",
    ),
    **{
        leaf: (EVERYTHING, SHARED_LEAVES, "a shared leaf imports nothing of ours but the leaves")
        for leaf in SHARED_LEAVES
    },
}


def refuses(layer: str, target: str) -> str | None:
    """Why ``layer`` may not import ``target`` (None: it may)."""
    refused, allowed, why = RULES.get(layer, (NOTHING, NOTHING, ""))
    if target == layer or target in allowed:
        return None
    return why if refused is EVERYTHING or target in refused else None


def module_name(path: Path, package_dir: Path) -> tuple[str, bool]:
    """``engine/models.py`` -> (``eci_imagecache.engine.models``, False); an ``__init__.py`` is
    its package (True)."""
    parts = [PACKAGE, *path.relative_to(package_dir).with_suffix("").parts]
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def imported(path: Path, package_dir: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module) for every import of ``path``, wherever it stands."""
    name, is_package = module_name(path, package_dir)
    package = name if is_package else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if node.module:
                yield node.lineno, module
            else:  # ``from .. import retry``: each name may be a module
                for alias in node.names:
                    yield node.lineno, f"{module}.{alias.name}"


def layer_of(module: str) -> str | None:
    """The layer of one of our modules (``""`` for the package itself); None for others'."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    return parts[1] if len(parts) > 1 else ""


def violations(package_dir: Path) -> list[str]:
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        own = layer_of(module_name(path, package_dir)[0]) or ""
        for line, module in imported(path, package_dir):
            target = layer_of(module)
            why = None if target is None else refuses(own, target)
            if why:
                found.append(f"{path.relative_to(package_dir)}:{line} imports {module}: {why}")
    return found


def test_every_import_of_the_package_points_the_allowed_way() -> None:
    assert violations(PACKAGE_DIR) == []


def test_the_parser_sees_the_packages_imports() -> None:
    """Not vacuous: the relative imports the layers are known to make are found."""
    edges = {
        (layer_of(module_name(path, PACKAGE_DIR)[0]), layer_of(module))
        for path in PACKAGE_DIR.rglob("*.py")
        for _, module in imported(path, PACKAGE_DIR)
    }
    assert {("backends", "engine"), ("registry", "engine"), ("dynamic", "backends")} <= edges
    assert ("registry", "retry") in edges


# A synthetic package that points the wrong way (or the right way) -------------------------------


def tree(tmp_path: Path, files: dict[str, str]) -> Path:
    package_dir = tmp_path / PACKAGE
    for name, text in {"__init__.py": "", **files}.items():
        path = package_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(package_dir).parents:
            (package_dir / parent / "__init__.py").touch()
        path.write_text(textwrap.dedent(text))
    return package_dir


WRONG_WAY = {
    "engine, absolute": ("engine/models.py", "import eci_imagecache.backends.base\n"),
    "engine, from absolute": ("engine/models.py", "from eci_imagecache.registry import client\n"),
    "engine, relative": ("engine/models.py", "from ..dynamic.checks import validate\n"),
    "engine, relative name": ("engine/models.py", "from .. import retry\n"),
    "engine, in a function": (
        "engine/models.py",
        "def load():\n    from ..runtime import layers\n    return layers\n",
    ),
    "engine, type checking": (
        "engine/models.py",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..cli import main\n",
    ),
    "engine, from its __init__": ("engine/__init__.py", "from .. import database\n"),
    "registry to backends": ("registry/client.py", "from ..backends.base import NotFound\n"),
    "registry to dynamic": ("registry/client.py", "from ..dynamic import checks\n"),
    "registry to plugin": ("registry/client.py", "import eci_imagecache.plugin.provider\n"),
    "registry to cli": ("registry/client.py", "from ..cli.main import app\n"),
    "runtime to backends": ("runtime/state.py", "from ..backends.local import store\n"),
    "runtime to engine": ("runtime/state.py", "from ..engine.models import CacheRecord\n"),
    "runtime to dynamic, nested": (
        "runtime/shim.py",
        "def main():\n    from eci_imagecache.dynamic import settings\n",
    ),
    "backends to dynamic": ("backends/local/store.py", "from ...dynamic.settings import X\n"),
    "backends to plugin": ("backends/base.py", "from ..plugin import schema\n"),
    "backends to cli": ("backends/emulator/server.py", "from ...cli import main\n"),
    "backends to components": ("backends/base.py", "import eci_imagecache.components\n"),
    "dynamic to plugin": ("dynamic/settings.py", "from ..plugin.values import names\n"),
    "dynamic to cli": ("dynamic/settings.py", "from ..cli import main\n"),
    "a leaf to the engine": ("retry.py", "from .engine import models\n"),
    "a leaf to the runtime": ("database.py", "from .runtime import state\n"),
}


@pytest.mark.parametrize(("module", "source"), WRONG_WAY.values(), ids=WRONG_WAY.keys())
def test_an_import_the_wrong_way_is_found(tmp_path: Path, module: str, source: str) -> None:
    package_dir = tree(tmp_path, {module: source})
    [found] = violations(package_dir)
    assert found.startswith(f"{module}:")


RIGHT_WAY = {
    "runtime to the leaves": (
        "runtime/state.py",
        "from ..database import open_db\nfrom .. import retry\n",
    ),
    "registry to engine": ("registry/client.py", "from ..engine.refs import ImageRef\n"),
    "backends to runtime": (
        "backends/local/groups.py",
        "from ...runtime.state import GroupState\n",
    ),
    "dynamic to backends": ("dynamic/checks.py", "from ..backends.base import BackendError\n"),
    "plugin to dynamic": ("plugin/provider.py", "from ..dynamic import server\n"),
    "cli to everything": (
        "cli/main.py",
        "from ..backends import factory\nfrom ..testing import registry\n",
    ),
    "within a layer": ("engine/diff.py", "from .refs import ImageRef\nfrom . import models\n"),
    "a leaf to a leaf": ("database.py", "from .retry import RetryPolicy\n"),
    "others' packages": ("engine/models.py", "import pydantic\nfrom json import dumps\n"),
}


@pytest.mark.parametrize(("module", "source"), RIGHT_WAY.values(), ids=RIGHT_WAY.keys())
def test_an_import_the_right_way_passes(tmp_path: Path, module: str, source: str) -> None:
    assert violations(tree(tmp_path, {module: source})) == []
