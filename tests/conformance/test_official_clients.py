"""The official Go and Node SDKs, each with both signatures, run a session against the emulator.

The clients are real: the Go SDK (``alibaba-cloud-sdk-go``, RPC signature v1, as the aliyun CLI
and Terraform sign) and the darabonba OpenAPI client the generated Go ECI package calls (ACS3,
and v1 with ``signatureAlgorithm "v2"``), built from ``tests/conformance/goclient``; the Node SDK
``@alicloud/eci20180808`` (ACS3 by default, v1 with ``"v2"``), run by
``tests/conformance/nodeclient/client.js``. ``scripts/install-conformance-clients.sh`` builds
them (``make setup`` runs it). What each SDK parsed from the answers is checked against what the
emulator's store holds; the refusals against the gateway's codes, and the store after them.
"""

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from eci_imagecache.backends.emulator.server import EmulatorServer
from eci_imagecache.backends.local.backend import LocalBackend

from ..backend.conftest import Clock, FastRegistry
from ..conftest import Registry, missing
from ..contract.conftest import ACCESS_KEY, REGION

ROOT = Path(__file__).resolve().parents[2]
NODE_CLIENT = ROOT / "tests" / "conformance" / "nodeclient" / "client.js"
SESSION = [
    "CreateImageCache",
    "DescribeImageCaches",
    "UpdateImageCache",
    "DescribeImageCaches",
    "ListUsage",
    "CreateContainerGroup",
    "DescribeContainerGroups",
    "DescribeContainerGroupEvents",
    "DeleteContainerGroup",
    "DeleteImageCache",
]


@dataclass(frozen=True)
class Clients:
    go: str
    node_modules: str


@pytest.fixture(scope="session")
def clients() -> Clients:
    for tool in ("go", "node", "npm"):
        if shutil.which(tool) is None:
            missing(f"{tool} is not installed: the official SDK clients need it")
    done = subprocess.run(
        [ROOT / "scripts" / "install-conformance-clients.sh"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        missing(f"the official SDK clients could not be built: {done.stderr[-2000:]}")
    paths = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return Clients(paths["go"], paths["node_modules"])


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorServer]:
    local = LocalBackend(
        data_dir=tmp_path / "cloud", region=REGION, clock=Clock(), registry_factory=FastRegistry
    )
    with EmulatorServer(local, dict([ACCESS_KEY])) as server:
        yield server


def run(clients: Clients, client: str, server: EmulatorServer, image: str, mode: str) -> list:
    """Run one official client; its JSON lines, one per step."""
    endpoint = server.endpoint.removeprefix("http://")
    key_id, secret = ACCESS_KEY
    if client.startswith("node"):
        signature = client.split("-")[1]
        argv = ["node", str(NODE_CLIENT), endpoint, key_id, secret, REGION, image, signature, mode]
        env = {**os.environ, "NODE_PATH": clients.node_modules}
    else:
        _, sdk, *rest = client.split("-")
        argv = [clients.go, f"-endpoint={endpoint}", f"-key={key_id}", f"-secret={secret}"]
        argv += [f"-region={REGION}", f"-image={image}", f"-sdk={sdk}", f"-mode={mode}"]
        argv += {"v1": ["-signature=v2"], "xml": ["-format=XML"]}.get(rest[0] if rest else "", [])
        env = dict(os.environ)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"{client} printed nothing: {done.stderr[-3000:]}"
    return lines


# (client, signature it sends)
SESSIONS = [
    "go-classic",  # alibaba-cloud-sdk-go: RPC v1 (HMAC-SHA1)
    "go-classic-xml",  # the same, asking Format=XML: its typed responses read the XML
    "go-tea",  # darabonba-openapi: ACS3-HMAC-SHA256
    "go-tea-v1",  # darabonba-openapi, signatureAlgorithm "v2": RPC v1
    "node-v3",  # @alicloud/eci20180808: ACS3-HMAC-SHA256
    "node-v2",  # @alicloud/eci20180808, signatureAlgorithm "v2": RPC v1
]


@pytest.mark.parametrize("client", SESSIONS)
def test_an_official_client_runs_the_nine_actions(
    clients: Clients, emulator: EmulatorServer, registry: Registry, client: str
) -> None:
    image = registry.ref("demo/web:1.0")
    steps = run(clients, client, emulator, image, "session")
    assert [s["step"] for s in steps] == SESSION, steps[-1]
    failures = [s for s in steps if not s["ok"]]
    assert not failures, failures
    values = [s["value"] for s in steps]
    created, described, _, renamed, usage, group, groups, events, *_ = values
    # What the SDK read is what the store held at the time.
    assert described["ImageCacheId"] == created["ImageCacheId"]
    assert described["Status"] == "Ready" and described["Images"] == [image]
    assert renamed["ImageCacheName"].endswith("-renamed")
    if "xml" not in client:  # a CommonRequest keeps an XML answer as text
        assert int(usage["Attributes"]["MaxImageCacheCount"]) > 0
        assert events["Data"][0]["ContainerGroupId"] == group["ContainerGroupId"]
    (seen,) = groups["ContainerGroups"]
    assert seen["ContainerGroupId"] == group["ContainerGroupId"]
    assert seen["Tags"] == [{"Key": "team", "Value": seen["Tags"][0]["Value"]}]
    (container,) = seen["Containers"]
    assert container["Image"] == image
    assert container["EnvironmentVars"][0]["Key"] == "GREETING"
    assert container["EnvironmentVars"][0]["Value"] == "hello world"
    local = emulator.actions.backend
    assert local.list_image_caches() == [] and local.list_container_groups() == []


REFUSALS = {
    "wrong-secret": (400, "SignatureDoesNotMatch"),
    "replayed-nonce": (400, "SignatureNonceUsed"),
    "old-timestamp": (400, "InvalidTimeStamp.Expired"),
}


@pytest.mark.parametrize("client", ["go-classic", "go-tea", "node-v3", "node-v2"])
def test_an_official_client_is_refused_with_the_gateways_code(
    clients: Clients, emulator: EmulatorServer, registry: Registry, client: str
) -> None:
    steps = {
        s["step"]: s
        for s in run(clients, client, emulator, registry.ref("demo/web:1.0"), "refusals")
    }
    for case, (status, code) in REFUSALS.items():
        if case in steps:
            got = steps[case]
            assert (got.get("status"), got.get("code")) == (status, code), got
    # go-tea has no hook for its clock or nonce: it shows the wrong secret only.
    assert set(steps) >= ({"wrong-secret"} if client == "go-tea" else set(REFUSALS))
    names = [c.name for c in emulator.actions.backend.list_image_caches()]
    # Only the request that was not refused made anything.
    if client == "go-tea":
        assert names == []
    else:
        assert steps["first-use-of-nonce"]["ok"]
        assert len(names) == 1 and names[0].endswith("first-use")
