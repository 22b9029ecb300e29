"""The registry the tests, the benchmarks and `eci-imagecache registry serve` start."""

import shutil
import socket
from pathlib import Path

import pytest

from eci_imagecache.testing.registry import RegistryServer

from ..conftest import missing


def test_a_port_something_else_listens_on_is_refused_not_taken_for_ours(tmp_path: Path) -> None:
    """docker-registry exits when it cannot listen; another server answering /v2/ on that
    port must not pass for it (the images would be pushed there)."""
    if shutil.which("docker-registry") is None:
        missing("docker-registry is not installed")
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"127.0.0.1:{port}: the port is in use"):
            RegistryServer(tmp_path / "registry", port=port).start()
    with RegistryServer(tmp_path / "registry", port=port) as server:  # free again: served
        assert server.process is not None and server.process.poll() is None
