"""What users see from `pulumi preview` / `up` / `refresh` / `destroy` with our resources."""

import json
import re

import pytest

from eci_imagecache.engine.models import ImageCacheSpec

from ..conftest import REGISTRY_USER, Registry
from .pulumi_cli import Stack

pytestmark = pytest.mark.e2e


def test_quickstart_lifecycle(quickstart: Stack, registry: Registry) -> None:
    quickstart.run("up", "--yes", "--skip-preview")
    out = quickstart.outputs()
    assert out["cache_status"] == "Ready"
    assert out["auto_match"].startswith(f"{out['cache_id']} (exact): 1/1 images exact")
    assert out["explicit_match"] == out["cache_id"]
    assert out["preparation_seconds"]["from_cache"] < out["preparation_seconds"]["without_cache"]
    # The headline: the same image's start-up, from the create call to its container running.
    startup = out["startup_seconds"]
    with_cache, without = startup["with_cache"], startup["without_cache"]
    assert 0 < with_cache < 60 and 0 < without < 60
    assert out["startup"].startswith(
        f"start-up of {registry.ref('demo/web:1.0')}: {without:.2f} s without a cache, "
        f"{with_cache:.2f} s with it: "
    )

    # Nothing to do right after up: neither preview nor refresh sees a change.
    quickstart.run("preview", "--expect-no-changes")
    quickstart.run("refresh", "--yes", "--expect-no-changes", "--skip-preview")

    # Retention: an in-place update of that field only.
    quickstart.run("config", "set", "retentionDays", "7")
    preview = quickstart.run("preview", "--diff").stdout
    assert "~ pulumi-python:dynamic/eci:ImageCache: (update)" in preview
    assert re.search(r"\+ retention_days\s*: 7", preview)
    assert '"update in place: retention_days None -> 7"' in preview
    assert "~ 1 to update" in preview and "5 unchanged" in preview
    assert "replace" not in preview
    quickstart.run("up", "--yes", "--skip-preview")
    assert quickstart.outputs()["cache_id"] == out["cache_id"]
    quickstart.run("preview", "--expect-no-changes")

    # Images: a rebuild, and the preview says what is fetched and what is reused.
    quickstart.run("config", "set", "--path", "images[0]", registry.ref("demo/web:1.1"))
    quickstart.run("config", "set", "--path", "images[1]", registry.ref("demo/worker:1.0"))
    preview = quickstart.run("preview", "--diff").stdout
    assert "rebuild the snapshot in place: images +" in preview
    assert "fetch 2 (" in preview and "reuse 4 (" in preview
    assert "~ pulumi-python:dynamic/eci:ImageCache: (update)" in preview
    quickstart.run("config", "rm", "images")

    # Evicted out of band: refresh notices, up recreates.
    backend = quickstart.backend()
    backend.delete_image_cache(out["cache_id"])
    refresh = quickstart.run("refresh", "--yes", "--skip-preview").stdout
    assert "- 1 deleted" in refresh
    assert any(
        "ImageCache web-cache" in line and "deleted" in line for line in refresh.splitlines()
    )
    quickstart.run("up", "--yes", "--skip-preview")
    recreated = quickstart.outputs()["cache_id"]
    assert recreated != out["cache_id"]
    assert [c.id for c in backend.list_image_caches()] == [recreated]

    quickstart.run("destroy", "--yes", "--skip-preview")
    assert backend.list_image_caches() == []
    assert backend.list_container_groups() == []


def test_group_preview_shows_the_match_and_up_records_it(example, registry: Registry) -> None:
    stack = example("auto-match", {"image": registry.ref("demo/web:1.0"), "cache": "auto"})
    backend = stack.backend()
    older = backend.create_image_cache(
        ImageCacheSpec(name="older", images=[registry.ref("demo/web:1.0")])
    )
    best = backend.create_image_cache(
        ImageCacheSpec(name="closest", size_gib=30, images=[registry.ref("demo/web:1.0")])
    )
    preview = stack.run("preview", "--diff").stdout
    assert f"would use closest ({best.id}): exact" in preview
    stack.run("up", "--yes", "--skip-preview")
    out = stack.outputs()
    assert (out["cache_used"], out["match_degree"]) == (best.id, "exact")
    assert "30 GiB for 30 GiB of storage" in out["match_reason"]
    assert older.id != best.id


def test_group_miss_creates_an_automatic_cache(example, registry: Registry) -> None:
    stack = example("auto-match", {"image": registry.ref("demo/tools:1.0")})
    assert "one would be created automatically" in stack.run("preview", "--diff").stdout
    stack.run("up", "--yes", "--skip-preview")
    out = stack.outputs()
    auto = stack.backend().get_image_cache(out["auto_created_cache_id"])
    assert auto.name.startswith("auto-create-for-eci-") and auto.kind.value == "auto"
    stack.run("destroy", "--yes", "--skip-preview")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("many", r"property images value .* has a problem: at most 20 images per cache, got 21"),
        ("malformed", r"property images value .* has a problem: invalid image reference 'nginx:'"),
        ("size", r"property size_gib value \{0\} has a problem: Input should be greater than or"),
    ],
)
def test_bad_input_fails_at_preview_naming_the_property(
    quickstart: Stack, registry: Registry, setting: str, message: str
) -> None:
    if setting == "many":
        quickstart.run(
            "config",
            "set",
            "images",
            json.dumps([registry.ref(f"demo/app{i}:1") for i in range(21)]),
        )
    elif setting == "malformed":
        quickstart.run("config", "set", "images", json.dumps(["nginx:"]))
    else:
        quickstart.run("config", "set", "sizeGib", "0")
    preview = quickstart.run("preview", check=False)
    assert preview.returncode != 0
    assert re.search(message, preview.stdout + preview.stderr)
    assert quickstart.backend().list_image_caches() == []


def test_registry_password_stays_secret(example, private_registry: Registry) -> None:
    user, password = REGISTRY_USER
    stack = example(
        "private-registry",
        {"registry": private_registry.host, "username": user},
        secrets={"password": password},
    )
    up = stack.run("up", "--yes", "--skip-preview")
    assert stack.outputs()["status"] == "Ready"
    state = stack.export()
    assert password not in state
    assert '"secure"' in state or "ciphertext" in state
    assert password not in up.stdout + up.stderr
    assert password not in stack.run("preview", "--diff").stdout
    for path in (stack.work / "eci-data").rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path


def test_adopt_an_existing_cache_then_destroy(quickstart: Stack, registry: Registry) -> None:
    backend = quickstart.backend()
    existing = backend.create_image_cache(
        ImageCacheSpec(
            name="made-by-hand",
            images=[registry.ref("demo/web:1.0"), registry.ref("demo/worker:1.0")],
        )
    )
    quickstart.run("config", "set", "adoptCacheId", existing.id)
    quickstart.run("up", "--yes", "--skip-preview")
    assert quickstart.outputs()["cache_id"] == existing.id
    adopted = backend.get_image_cache(existing.id)
    assert adopted.name == "web-cache" and adopted.eviction.value == "LRU"
    assert [c.id for c in backend.list_image_caches()] == [existing.id]
    quickstart.run("destroy", "--yes", "--skip-preview")
    assert backend.list_image_caches() == [] and backend.list_container_groups() == []
