import contextlib
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from eci_imagecache.testing.registry import (
    ImageBuilder,
    RegistryServer,
    SampleImages,
    push_samples,
)
from eci_imagecache.testing.runnable import BusyboxMissing, RunnableImages, push_runnable

REGISTRY_USER = ("ci-user", "registry-pass-7Qx!")

# Property tests (Hypothesis): a modest number of examples keeps the fast suite fast, locally and
# in CI alike; HYPOTHESIS_PROFILE=thorough digs deeper when a rule changes. No deadline: the
# machines running the suite are shared, and a slow example is not a failure.
settings.register_profile("fast", max_examples=40, deadline=None)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))


def shim_processes(under: Path) -> list[int]:
    """Shims (running a group or kept ready) of stores under ``under``: processes named
    ``eci-shim`` (forked by the fork server, or started as a program) holding a file under it
    open (their state database), or started as a program with a path under it."""
    prefix = str(under)
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if (proc / "comm").read_text().strip() != "eci-shim":
                continue
            args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            if any(a.startswith(prefix) for a in args):
                found.append(int(proc.name))
                continue
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd).startswith(prefix):
                        found.append(int(proc.name))
                        break
        except OSError:
            continue  # ended meanwhile
    return found


def missing(what: str) -> None:
    """A component the tests need is absent: a failure in CI, a skip on a developer machine."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI must install it: see .ci/run)", pytrace=False)
    pytest.skip(what)


class Registry:
    def __init__(
        self,
        server: RegistryServer,
        samples: SampleImages,
        auth: tuple[str, str] | None = None,
        runnable: RunnableImages | None = None,
    ) -> None:
        self.server = server
        self.samples = samples
        self.auth = auth
        self._runnable = runnable

    @property
    def runnable(self) -> RunnableImages:
        """The images that really run (built from busybox-static)."""
        if self._runnable is None:
            missing("busybox-static is not installed: run scripts/install-system-deps.sh")
        assert self._runnable is not None
        return self._runnable

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
            try:
                runnable = push_runnable(builder)
            except BusyboxMissing:
                runnable = None
            yield Registry(server, push_samples(builder), auth, runnable)
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


@pytest.fixture(scope="session", autouse=True)
def no_containers_left(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Groups a failed test did not delete are stopped when the session ends: their
    supervisors (shims), started under this session's temporary directory, get SIGTERM (they
    stop their containers), then SIGKILL."""
    yield
    shims = shim_processes(tmp_path_factory.getbasetemp())
    for pid in shims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while shims and time.monotonic() < deadline:
        shims = [pid for pid in shims if Path(f"/proc/{pid}").exists()]
        time.sleep(0.1)
    for pid in shims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
