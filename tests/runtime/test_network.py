"""Each group its own network, with real crun: a container sees neither the host's interfaces,
its loopback services nor its loopback traffic, and a group's declared ports are published at
an address of its own on the host's loopback (two groups may use the same port)."""

import http.server
import ipaddress
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from eci_imagecache.runtime import network
from eci_imagecache.runtime.state import RuntimeState
from eci_imagecache.testing.registry import free_port

from .test_supervisor import leftovers, run, wait_for

RELEASES = Path(__file__).parents[1] / "fixtures" / "releases"


class HostService(http.server.BaseHTTPRequestHandler):
    """A service on the host's 127.0.0.1 (as the provider's registry is): it counts requests."""

    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        HostService.requests.append(self.path)
        body = b"host-secret\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def host_service() -> Iterator[int]:
    HostService.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HostService)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def answer(address: str, port: int, timeout: float = 10) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(f"http://{address}:{port}/", timeout=2)
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"nothing answers at {address}:{port}"
            time.sleep(0.05)


def web(layer: str, name: str, port: int, content: str):
    script = (
        f"mkdir -p /tmp/www && echo {content} > /tmp/www/index.html && "
        f"exec httpd -f -p {port} -h /tmp/www"
    )
    return run(layer, name, script, ports=[port])


def test_a_host_loopback_service_does_not_answer_inside_a_container(
    runtime, busybox_layer, host_service
):
    request = "GET / HTTP/1.0\\r\\n\\r\\n"
    script = f"printf '{request}' | nc -w 3 127.0.0.1 {host_service} 2>&1; echo exit=$?"
    runtime.start("grp-reach", "reach", [run(busybox_layer, "main", script)], "Never")
    wait_for(runtime, "grp-reach", "Succeeded", "Failed", timeout=30)
    logs = runtime.logs("grp-reach", "main").decode()
    assert "host-secret" not in logs and "exit=1" in logs, logs
    assert HostService.requests == []
    # The service does answer on the host: the container's failure is its network's.
    assert httpx.get(f"http://127.0.0.1:{host_service}/").text == "host-secret\n"


def test_a_container_sees_only_its_loopback(runtime, busybox_layer):
    runtime.start("grp-dev", "dev", [run(busybox_layer, "main", "cat /proc/net/dev")], "Never")
    wait_for(runtime, "grp-dev", "Succeeded")
    lines = runtime.logs("grp-dev", "main").decode().splitlines()[2:]  # two header lines
    assert [line.split(":")[0].strip() for line in lines] == ["lo"]
    host = [line.split(":")[0] for line in Path("/proc/net/dev").read_text().splitlines()[2:]]
    assert len(host) > 1  # the host has more than a loopback to hide


CAPTURE = textwrap.dedent(
    """
    import ctypes, os, socket, sys, time
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(os.open(sys.argv[1], os.O_RDONLY), 0x40000000) != 0:  # CLONE_NEWNET
        sys.exit("setns: " + os.strerror(ctypes.get_errno()))
    capture = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))  # ETH_P_ALL
    capture.settimeout(0.1)
    print("capturing", flush=True)
    sys.stdin.readline()  # the host's traffic has been sent
    marker = sys.argv[2].encode()
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"in-" + marker, ("127.0.0.1", 9))
    seen, deadline = b"", time.monotonic() + 1
    while time.monotonic() < deadline:
        try:
            seen += capture.recv(65536)
        except TimeoutError:
            pass
    print(b"in-" + marker in seen, b"host-" + marker in seen)
    """
)


def test_a_packet_capture_in_a_group_sees_none_of_the_host_s_loopback_traffic(
    runtime, busybox_layer, host_service
):
    """An AF_PACKET socket (CAP_NET_RAW, which containers have) in the group's network
    namespace, opened by entering the namespace of the container's process: it sees the group's
    own loopback traffic, and none of the host's."""
    group = runtime.start("grp-cap", "cap", [run(busybox_layer, "main", "exec sleep 600")])
    assert group.status == "Running"
    pid = (runtime.groups_dir / "grp-cap/containers/main/pid").read_text()
    marker = secrets.token_hex(8)
    capture = subprocess.Popen(
        [sys.executable, "-c", CAPTURE, f"/proc/{pid}/ns/net", marker],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert capture.stdout is not None and capture.stdin is not None
    assert capture.stdout.readline() == "capturing\n"
    for _ in range(3):  # what a token in a header on the host's loopback would be
        httpx.get(f"http://127.0.0.1:{host_service}/", headers={"Authorization": f"host-{marker}"})
    capture.stdin.write("sent\n")
    capture.stdin.flush()
    out, _ = capture.communicate(timeout=30)
    assert HostService.requests  # the host's traffic was there to see
    assert out.split() == ["True", "False"]  # its own traffic, none of the host's


def test_two_groups_publish_the_same_port_each_at_its_own_address(runtime, busybox_layer):
    port = free_port()
    first = runtime.start("grp-one", "one", [web(busybox_layer, "httpd", port, "first")])
    second = runtime.start("grp-two", "two", [web(busybox_layer, "httpd", port, "second")])
    assert (first.status, second.status) == ("Running", "Running")
    assert first.address != second.address
    for address in (first.address, second.address):
        assert ipaddress.ip_address(address) in ipaddress.ip_network("127.0.0.0/8")
    assert answer(first.address, port).text == "first\n"
    assert answer(second.address, port).text == "second\n"
    # Each listens only in its own namespace: nothing of theirs on the host's 127.0.0.1.
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
    for group_id in ("grp-one", "grp-two"):
        runtime.stop(group_id)
        assert leftovers(group_id) == []
    # Stopped, a group's port is free again at its address.
    with socket.create_server((first.address, port)):
        pass


def test_a_published_port_relays_both_ways_and_passes_the_end_on(runtime, busybox_layer):
    """4 MiB through an echo server in the group: every byte comes back, and the client's end
    of writing reaches the server (which then ends the connection)."""
    port = free_port()
    echo = run(busybox_layer, "echo", f"exec nc -ll -p {port} -e cat", ports=[port])
    group = runtime.start("grp-echo", "echo", [echo])
    data = os.urandom(4 << 20)
    deadline = time.monotonic() + 10
    while True:
        conn = socket.create_connection((group.address, port), timeout=10)
        try:
            conn.sendall(b"x")
            if conn.recv(1) == b"x":
                break
        except OSError:
            pass
        conn.close()
        assert time.monotonic() < deadline, "the echo server never answered"
        time.sleep(0.05)
    conn.close()
    with socket.create_connection((group.address, port), timeout=10) as conn:

        def send() -> None:
            conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        received = bytearray()
        while chunk := conn.recv(1 << 16):
            received += chunk
        sender.join()
    assert len(received) == len(data) and received == data


def test_a_port_another_process_holds_moves_the_group_to_another_address(runtime, busybox_layer):
    """Another runtime's group (here: a plain listener) holds the port at the first address: the
    group is published at the next one."""
    port = free_port()
    first = next(network.candidates([]))
    with socket.create_server((first, port)):
        group = runtime.start("grp-moved", "moved", [web(busybox_layer, "httpd", port, "moved")])
        assert group.address not in (None, first)
        assert answer(group.address, port).text == "moved\n"


def test_a_store_made_before_groups_had_addresses_still_reads_and_gains_them(tmp_path):
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.executescript((RELEASES / "before-addresses-runtime.sql").read_text())
    # A read-only view (nothing may be written) reads it as it is: no address.
    assert RuntimeState(path, read_only=True).group("grp-old").address is None
    writer = RuntimeState(path)  # a writer adds the column
    for group_id in ("grp-new", "grp-next"):
        writer.add_group(
            group_id,
            group_id,
            tmp_path,
            "Always",
            [],
            owner_pid=1,
            requested_at=0,
            claim_address=lambda used: next(network.candidates(used)),
        )
    assert writer.group("grp-old").address is None  # on the host's network, as it was started
    assert [writer.group(g).address for g in ("grp-new", "grp-next")] == [
        "127.77.0.1",
        "127.77.0.2",
    ]


def test_group_addresses_are_the_loopback_hosts_of_the_group_network_not_yet_held():
    every = list(network.candidates([]))
    assert every == [str(a) for a in ipaddress.ip_network(network.GROUP_NETWORK).hosts()]
    assert all(ipaddress.ip_address(a).is_loopback for a in every)
    assert next(network.candidates(["127.77.0.1", "127.77.0.3"])) == "127.77.0.2"
