"""An HTTP server on 127.0.0.1 for the test doubles: a free port, one thread per connection."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients hanging up on delayed or slow answers are expected


def serve(handler: type[BaseHTTPRequestHandler]) -> tuple[QuietServer, threading.Thread]:
    """Start serving on a free loopback port; stop with ``shutdown()`` and ``server_close()``."""
    server = QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread
