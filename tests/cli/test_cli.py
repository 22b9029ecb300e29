"""The eci-imagecache command through its real entry point."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import Registry

CLI = Path(sys.executable).parent / "eci-imagecache"


@pytest.fixture
def cli(tmp_path: Path):
    env = {**os.environ, "ECI_IMAGECACHE_HOME": str(tmp_path / "data")}
    env.pop("ECI_BACKEND", None)

    def run(*args: str, code: int = 0) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(CLI), *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == code, result.stdout + result.stderr
        return result

    return run


def test_build_list_show_events(cli, registry: Registry) -> None:
    built = cli(
        "caches",
        "build",
        "web",
        registry.ref("demo/web:1.0"),
        registry.ref("demo/worker:1.0"),
        "--eviction",
        "LRU",
    )
    assert "Ready; 2 images, 6 blobs" in built.stdout
    [cache] = json.loads(cli("--json", "caches", "list").stdout)
    assert (cache["name"], cache["status"], cache["eviction"], cache["usable"]) == (
        "web",
        "Ready",
        "LRU",
        True,
    )
    table = cli("caches", "list").stdout
    assert "1 image cache" in table and cache["id"] in table and "Ready" in table
    shown = json.loads(cli("--json", "caches", "show", cache["id"]).stdout)
    assert shown["images"] == sorted(
        [registry.ref("demo/web:1.0"), registry.ref("demo/worker:1.0")]
    )
    events = json.loads(cli("--json", "caches", "events", cache["id"]).stdout)
    assert [e["reason"] for e in events] == ["Created", "Building", "Unpacked", "Ready"]
    assert "Building" in cli("caches", "events", cache["id"]).stdout
    # People type the name they built it with.
    assert json.loads(cli("--json", "caches", "show", "web").stdout) == shown
    assert json.loads(cli("--json", "caches", "events", "web").stdout) == events
    nameless = cli("caches", "show", "api", code=3)
    assert nameless.stderr.strip() == (
        "error: image cache api not found (no cache has that id or name)"
    )


def test_match_explain_ranks_with_reasons(cli, registry: Registry) -> None:
    cli("caches", "build", "exact", registry.ref("demo/web:1.1"))
    cli("caches", "build", "older-version", registry.ref("demo/web:1.0"))
    result = json.loads(cli("--json", "match", "explain", registry.ref("demo/web:1.1")).stdout)
    assert [c["name"] for c in result["ranking"]] == ["exact", "older-version"]
    assert result["chosen"] == result["ranking"][0]["cache_id"]
    human = cli("match", "explain", registry.ref("demo/web:1.1")).stdout
    assert "chosen: exact (" in human and "1/1 images exact" in human
    too_small = json.loads(cli("--json", "match", "explain", registry.ref("demo/web:1.1")).stdout)
    assert too_small["needed_gib"] == 30
    bigger = json.loads(
        cli(
            "--json", "match", "explain", "--ephemeral-storage", "10", registry.ref("demo/web:1.1")
        ).stdout
    )
    assert bigger["needed_gib"] == 40


def test_usage_and_gc(cli, registry: Registry) -> None:
    cli("caches", "build", "temp", registry.ref("demo/tools:1.0"))
    assert json.loads(cli("--json", "usage").stdout)["manual"] == {"used": 1, "quota": 50}
    [cache] = json.loads(cli("--json", "caches", "list").stdout)
    cli("caches", "delete", cache["id"])
    # The delete freed what only that cache held (its config blob, its four unpacked
    # layers): nothing is left for gc (what crashes leave: see test_gc_dry_run.py).
    dry = json.loads(cli("--json", "gc", "--dry-run", "--grace-minutes", "0").stdout)
    assert dry["dry_run"] and (dry["blobs_removed"], dry["layers_removed"]) == (0, 0)
    done = cli("gc", "--grace-minutes", "0").stdout
    assert "deleted 0 unreferenced blobs and 0 unpacked layers" in done


def test_errors_are_one_line_with_exit_codes(cli) -> None:
    missing = cli("caches", "show", "imc-nope", code=3)
    assert missing.stderr.strip() == "error: image cache imc-nope not found"
    bad = cli("caches", "build", "web", "nginx:", code=2)
    assert bad.stderr.count("\n") == 1
    assert "images: invalid image reference 'nginx:'" in bad.stderr
    # The CLI goes through the same specs as check: ECI's reserved names, the spec's tags.
    reserved = cli("caches", "build", "auto-create-for-eci-1", "127.0.0.1:9/demo/web:1.0", code=2)
    assert reserved.stderr.startswith("error: name: names starting with 'auto-create-for-'")
    tag = cli("match", "explain", "127.0.0.1:9/demo/web:vé", code=2)
    assert tag.stderr.startswith("error: containers[0].image: invalid image reference")
    assert tag.stderr.count("\n") == 1
    unreachable = cli("caches", "build", "web", "127.0.0.1:9/demo/web:1.0", code=1)
    assert unreachable.stderr.startswith("error: image cache web: image 127.0.0.1:9/demo/web:1.0")
    assert cli("--backend", "nope", "usage", code=1).stderr.startswith("error: backend: unknown")


def test_options_after_the_subcommand_and_reads_never_write(
    cli, registry: Registry, tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    from eci_imagecache.backends.local.backend import LocalBackend
    from eci_imagecache.engine.models import ImageCacheSpec

    # A cache whose retention ran out a day ago: due for deletion, not yet deleted.
    three_days_ago = datetime.now(UTC) - timedelta(days=3)
    old = LocalBackend(data_dir=tmp_path / "data", clock=lambda: three_days_ago)
    expired = old.create_image_cache(
        ImageCacheSpec(name="old", images=[registry.ref("demo/web:1.0")], retention_days=2)
    )
    for args in (
        ("caches", "list", "--json"),
        ("caches", "list"),
        ("--json", "caches", "list"),
        ("caches", "list", "--data-dir", str(tmp_path / "data"), "--json"),
    ):
        cli(*args)
    assert cli("caches", "list", "--json").stdout.strip().startswith("[")
    # Reads left the expired cache in the store; `gc`, a write, deletes it.
    with old.store.read() as db:
        assert [c.id for c in old.store.list_caches(db)] == [expired.id]
    report = json.loads(cli("gc", "--json").stdout)
    assert report["expired"] == [f"{expired.id} (retention of 2 days elapsed)"]
    with old.store.read() as db:
        assert old.store.list_caches(db) == []


def test_a_name_two_caches_share_asks_for_an_id() -> None:
    from types import SimpleNamespace

    from eci_imagecache.backends.base import NotFound
    from eci_imagecache.cli.main import cache_id_of

    caches = [SimpleNamespace(id=f"imc-{n}", name="web") for n in ("a1", "b2")]
    target = SimpleNamespace(list_image_caches=lambda: caches)
    with pytest.raises(NotFound, match="2 image caches are named web: imc-a1, imc-b2; give an id"):
        cache_id_of(target, "web")
    assert cache_id_of(target, "imc-zz") == "imc-zz"  # ids are taken as given
