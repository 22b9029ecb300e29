"""Blob bodies read with http.client: kept-alive connections are reused, and one the server
has closed meanwhile is replaced without failing the download."""

import time
from http.server import BaseHTTPRequestHandler

from eci_imagecache.registry import bodies

from ..support.loopback import serve

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


def fetch(url: str) -> bytes:
    body = bodies.open_body(
        url,
        {},
        verify=True,
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
