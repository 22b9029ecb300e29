"""Blob bodies read with http.client: kept-alive connections are reused, one the server has
closed meanwhile is replaced without failing the download, and TLS is verified unless the
registry is listed as insecure."""

import datetime
import ipaddress
import select
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from eci_imagecache.registry import bodies

from ..support.loopback import QuietServer, serve

BODY = b"blob bytes " * 1000


def start(close_after_each: bool):
    connections: set[tuple[str, int]] = set()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive unless told otherwise

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            connections.add(self.client_address)
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)
            # A server that drops idle connections, without saying so in the answer.
            self.close_connection = close_after_each

    server, _ = serve(Handler)
    return server, connections


def fetch(url: str, verify: bool = True) -> bytes:
    body = bodies.open_body(
        url,
        {},
        verify=verify,
        max_redirects=5,
        connect_timeout=2,
        read_timeout=2,
        deadline=time.monotonic() + 10,
    )
    try:
        data = b""
        while chunk := body.read():
            data += chunk
        return data
    finally:
        body.close()


def test_a_kept_alive_connection_serves_the_next_blob():
    server, connections = start(close_after_each=False)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v2/app/blobs/x"
        assert [fetch(url) for _ in range(3)] == [BODY] * 3
        assert len(connections) == 1
    finally:
        server.shutdown()
        server.server_close()


def test_a_connection_the_server_closed_is_replaced():
    server, connections = start(close_after_each=True)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v2/app/blobs/x"
        assert [fetch(url) for _ in range(3)] == [BODY] * 3
        assert len(connections) == 3
    finally:
        server.shutdown()
        server.server_close()


# TLS: what real registries speak ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """An HTTPS server on 127.0.0.1 with a self-signed certificate (made here for this test)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)

    server = QuietServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}/v2/app/blobs/x"
    server.shutdown()
    server.server_close()


def test_a_blob_over_tls_from_an_insecure_registry_arrives(tls_server):
    assert fetch(tls_server, verify=False) == BODY


def test_a_certificate_nobody_vouches_for_is_refused(tls_server):
    with pytest.raises(ssl.SSLCertVerificationError):
        fetch(tls_server, verify=True)


@pytest.fixture
def connect_proxy():
    """A forward proxy that tunnels CONNECT requests (as HTTPS_PROXY proxies do); it records
    the targets it was asked for."""
    tunnels: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_CONNECT(self) -> None:
            tunnels.append(self.path)
            host, _, port = self.path.rpartition(":")
            upstream = socket.create_connection((host, int(port)), timeout=10)
            self.send_response(200)
            self.end_headers()
            self.close_connection = True
            sockets = [self.connection, upstream]
            while True:
                ready, _, _ = select.select(sockets, [], [], 10)
                if not ready:
                    break
                data = b""
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        break
                    (upstream if sock is self.connection else self.connection).sendall(data)
                if not data:
                    break
            upstream.close()

    server, _ = serve(Handler)
    yield f"http://127.0.0.1:{server.server_address[1]}", tunnels
    server.shutdown()
    server.server_close()


def test_a_blob_over_tls_goes_through_the_https_proxy(tls_server, connect_proxy, monkeypatch):
    proxy, tunnels = connect_proxy
    for name in ("https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    assert fetch(tls_server, verify=False) == BODY
    assert tunnels == [tls_server.split("/")[2]]  # CONNECT 127.0.0.1:<port>, TLS end to end
