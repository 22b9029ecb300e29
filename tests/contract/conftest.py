"""One contract, two backends: the local backend directly, and the alicloud backend (the official
SDK) talking over HTTP to the emulator serving a local backend."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_credentials.client import Client as CredentialClient
from alibabacloud_credentials.models import Config as CredentialConfig

from eci_imagecache.backends.alicloud import AliCloudBackend
from eci_imagecache.backends.emulator.server import EmulatorServer
from eci_imagecache.backends.local.backend import LocalBackend

from ..backend.conftest import Clock, FastRegistry

REGION = "cn-hangzhou"
ACCESS_KEY = ("LTAI-contract-test", "contract-secret-Zq9")


def credential(key_id: str, secret: str) -> CredentialClient:
    return CredentialClient(
        CredentialConfig(type="access_key", access_key_id=key_id, access_key_secret=secret)
    )


def cloud_backend(endpoint: str, **options: Any) -> AliCloudBackend:
    """The alicloud backend on the official SDK, polling fast, signed with the test key."""
    return AliCloudBackend(
        region=REGION,
        endpoint=endpoint,
        credential=credential(*ACCESS_KEY),
        poll_interval=0.02,
        timeout=30,
        **options,
    )


@dataclass
class Harness:
    backend: Any  # the backend under test
    local: LocalBackend  # where the state really is: to set quotas and read the truth
    clock: Clock
    emulator: EmulatorServer | None = None


@pytest.fixture(params=["local", "alicloud"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    clock = Clock()
    local = LocalBackend(
        data_dir=tmp_path / "data", region=REGION, clock=clock, registry_factory=FastRegistry
    )
    if request.param == "local":
        yield Harness(local, local, clock)
        return
    with EmulatorServer(local, dict([ACCESS_KEY])) as server:
        yield Harness(cloud_backend(server.endpoint), local, clock, server)
