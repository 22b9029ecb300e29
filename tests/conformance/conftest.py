"""The alicloud backend over the official SDK, recording every call, against the emulator."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from eci_imagecache.backends.alicloud import AliCloudBackend
from eci_imagecache.backends.emulator.server import EmulatorServer
from eci_imagecache.backends.local.backend import LocalBackend

from ..backend.conftest import Clock, FastRegistry
from ..contract.conftest import ACCESS_KEY, REGION, cloud_backend
from .sdk_shapes import RecordingClient


@dataclass
class Wire:
    backend: AliCloudBackend
    client: RecordingClient
    local: LocalBackend
    server: EmulatorServer


def make_wire(tmp_path: Path, **server_options: object) -> Iterator[Wire]:
    local = LocalBackend(
        data_dir=tmp_path / "cloud", region=REGION, clock=Clock(), registry_factory=FastRegistry
    )
    with EmulatorServer(local, dict([ACCESS_KEY]), **server_options) as server:
        backend = cloud_backend(server.endpoint, client_class=RecordingClient)
        yield Wire(backend, backend.client, local, server)


@pytest.fixture
def wire(tmp_path: Path) -> Iterator[Wire]:
    yield from make_wire(tmp_path)
