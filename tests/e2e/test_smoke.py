"""The real Pulumi CLI runs our dynamic provider end to end."""

import pytest

from eci_imagecache.backends.local.backend import LocalBackend

from .pulumi_cli import Stack

pytestmark = pytest.mark.e2e


def test_preview_up_preview_destroy(quickstart: Stack) -> None:
    stack = quickstart.init()
    stack.run("config", "set", "--path", "images[0]", "nginx:1.27")
    stack.run("config", "set", "--path", "images[1]", "docker.io/library/redis:7")

    preview = stack.run("preview", "--diff")
    assert "pulumi-python:dynamic/eci:ImageCache" in preview.stdout
    assert "+ 2 to create" in preview.stdout

    up = stack.run("up", "--yes", "--skip-preview")
    assert "2 created" in up.stdout
    outputs = stack.outputs()
    assert outputs["images"] == ["docker.io/library/nginx:1.27", "docker.io/library/redis:7"]
    # The cache is really in the local backend's store, under the id Pulumi recorded.
    backend = LocalBackend(data_dir=stack.work / "eci-data")
    assert [c.id for c in backend.list_image_caches()] == [outputs["cache_id"]]

    again = stack.run("preview", "--expect-no-changes")
    assert "2 unchanged" in again.stdout

    stack.run("destroy", "--yes", "--skip-preview")
    assert backend.list_image_caches() == []


def test_bad_input_fails_at_preview_naming_the_property(quickstart: Stack) -> None:
    stack = quickstart.init()
    stack.run("config", "set", "--path", "images[0]", "nginx:")
    preview = stack.run("preview", check=False)
    assert preview.returncode != 0
    text = preview.stdout + preview.stderr
    assert "images" in text and "invalid image reference 'nginx:'" in text
    assert (
        not (stack.work / "eci-data" / "state.db").exists()
        or not LocalBackend(data_dir=stack.work / "eci-data").list_image_caches()
    )
