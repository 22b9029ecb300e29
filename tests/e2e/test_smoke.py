"""The real Pulumi CLI runs our dynamic providers end to end."""

import pytest

from eci_imagecache.backends.local.backend import LocalBackend

from .pulumi_cli import Stack

pytestmark = pytest.mark.e2e


def test_preview_up_preview_destroy(quickstart: Stack) -> None:
    preview = quickstart.run("preview", "--diff")
    assert "pulumi-python:dynamic/eci:ImageCache" in preview.stdout
    assert "+ 6 to create" in preview.stdout

    up = quickstart.run("up", "--yes", "--skip-preview")
    assert "6 created" in up.stdout
    outputs = quickstart.outputs()
    backend = LocalBackend(data_dir=quickstart.work / "eci-data")
    assert [c.id for c in backend.list_image_caches()] == [outputs["cache_id"]]

    again = quickstart.run("preview", "--expect-no-changes")
    assert "6 unchanged" in again.stdout

    quickstart.run("destroy", "--yes", "--skip-preview")
    assert backend.list_image_caches() == []
    assert backend.list_container_groups() == []
