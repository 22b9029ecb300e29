import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from eci_imagecache.testing.registry import (
    ImageBuilder,
    RegistryServer,
    SampleImages,
    push_samples,
)

REGISTRY_USER = ("ci-user", "registry-pass-7Qx!")


def missing(what: str) -> None:
    """A component the tests need is absent: a failure in CI, a skip on a developer machine."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI must install it: see .ci/run)", pytrace=False)
    pytest.skip(what)


class Registry:
    def __init__(
        self, server: RegistryServer, samples: SampleImages, auth: tuple[str, str] | None = None
    ) -> None:
        self.server = server
        self.samples = samples
        self.auth = auth

    @property
    def host(self) -> str:
        return self.server.host

    def ref(self, name: str) -> str:
        """``demo/web:1.0`` -> ``127.0.0.1:PORT/demo/web:1.0``."""
        return f"{self.server.host}/{name}"

    def builder(self) -> ImageBuilder:
        return ImageBuilder(self.server.url, auth=self.auth)


def _start(root: Path, users: dict[str, str] | None = None) -> Iterator[Registry]:
    if shutil.which("docker-registry") is None:
        missing("docker-registry is not installed: run scripts/install-system-deps.sh")
    with RegistryServer(root, users=users) as server:
        auth = next(iter(users.items())) if users else None
        builder = ImageBuilder(server.url, auth=auth)
        try:
            yield Registry(server, push_samples(builder), auth)
        finally:
            builder.close()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A real docker-registry on loopback with the sample images, no auth."""
    yield from _start(tmp_path_factory.mktemp("registry"))


@pytest.fixture(scope="session")
def private_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """The same with htpasswd Basic auth (user ``REGISTRY_USER``)."""
    yield from _start(tmp_path_factory.mktemp("private-registry"), dict([REGISTRY_USER]))
