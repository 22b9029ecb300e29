"""Each layer's errors have names of their own: a caller imports an error by its name, without
an alias, and catches one family per layer (engine, registry client, backends, emulator)."""

from __future__ import annotations

import ast
import builtins
from collections import defaultdict
from pathlib import Path

import eci_imagecache
from eci_imagecache.backends import base
from eci_imagecache.backends.emulator import errors as emulator
from eci_imagecache.engine import errors as engine
from eci_imagecache.registry import client as registry

PACKAGE_DIR = Path(eci_imagecache.__file__).parent
BUILTIN_ERRORS = {
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
}


def _base_name(node: ast.expr) -> str:
    return node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")


def error_classes(package_dir: Path) -> dict[str, list[str]]:
    """Class name -> the modules that define an exception class of that name. A class is an
    exception when a base is a built-in exception or (by name) one of ours."""
    classes = [
        (node, str(path.relative_to(package_dir)))
        for path in sorted(package_dir.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef)
    ]
    errors = set(BUILTIN_ERRORS)
    while True:
        more = {n.name for n, _ in classes if {_base_name(b) for b in n.bases} & errors} - errors
        if not more:
            break
        errors |= more
    found: dict[str, list[str]] = defaultdict(list)
    for node, where in classes:
        if node.name in errors:
            found[node.name].append(where)
    return found


def test_no_two_errors_of_the_package_share_a_name() -> None:
    shared = {name: where for name, where in error_classes(PACKAGE_DIR).items() if len(where) > 1}
    assert shared == {}


def test_the_scan_finds_errors_of_every_family() -> None:
    found = error_classes(PACKAGE_DIR)
    assert {"InvalidProperty", "RegistryError", "BackendRegistryError", "EciError"} <= set(found)


def test_each_layer_has_one_family() -> None:
    """The families do not cross: a backend translates registry client errors into its own,
    so a caller of a backend catches ``BackendError`` alone."""
    assert issubclass(base.BackendImageNotFound, base.BackendError)
    assert not issubclass(base.BackendImageNotFound, registry.RegistryError)
    assert not issubclass(registry.ImageNotFound, base.BackendError)
    assert not issubclass(emulator.ImageCacheQuotaExceeded, base.BackendError)
    assert not issubclass(base.QuotaExceeded, engine.EngineError)


def test_a_registry_error_becomes_the_backends_kind_of_it() -> None:
    kinds = {
        registry.ImageNotFound: base.BackendImageNotFound,
        registry.AuthenticationError: base.BackendRegistryAuthError,
        registry.RegistryUnavailable: base.BackendRegistryUnavailable,
        registry.DigestMismatch: base.BackendRegistryContentError,
        registry.MalformedManifest: base.BackendRegistryContentError,
        registry.RegistryError: base.BackendRegistryError,
    }
    for theirs, ours in kinds.items():
        translated = base.from_registry("image cache web", theirs("image x: why"))
        assert type(translated) is ours
        assert str(translated) == "image cache web: image x: why"
