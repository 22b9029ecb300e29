"""The HTTP side of the emulator: the official ECI SDK's RPC-style requests, signed.

Requests are ``POST /?<flattened parameters>`` with ``x-acs-action``/``x-acs-version`` headers and
an ACS3-HMAC-SHA256 ``Authorization``. In order: the body is bounded (before anything reads it),
the signature and date are checked, the nonce is spent (nonces persist across restarts), then
the parameters are read through the SDK's request model (``params``) and the action answers
(``actions``). Errors (``errors``) are mapped here, once. Passwords travel in the query string,
so no request value is ever logged or echoed: logs name a served action and the status only.
Idle connections are closed after ``connection_timeout`` seconds, and at most
``max_connections`` are served at once.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..local.backend import LocalBackend
from . import errors
from .actions import Actions
from .params import REQUESTS, parse, unflatten
from .signing import MAX_CLOCK_SKEW, SignatureError, verify
from .state import EmulatorState

log = logging.getLogger("eci_imagecache.emulator")
API_VERSION = "2018-08-08"
# The SDK sends parameters in the query string; a body is bounded before it is read.
MAX_BODY = 1024 * 1024
# A nonce is remembered as long as a request carrying it could still be accepted (its date
# within the allowed skew either way), so forgetting it never lets a replay in.
NONCE_HORIZON = 2 * MAX_CLOCK_SKEW.total_seconds()

__all__ = ["API_VERSION", "EmulatorServer", "unflatten"]


class EmulatorServer:
    """Serve the ECI actions on ``host:port`` (loopback by default); verify every signature."""

    def __init__(
        self,
        backend: LocalBackend,
        access_keys: dict[str, str],
        host: str = "127.0.0.1",
        port: int = 0,
        state_path: Path | None = None,
        connection_timeout: float = 30.0,
        max_body: int = MAX_BODY,
        stale_reads: int = 0,
        max_connections: int = 64,
        throttle: dict[str, int] | None = None,
    ) -> None:
        """``throttle``: answer this many calls of an action with ``Throttling.User`` first,
        as a busy service does (for testing clients' retries)."""
        if not access_keys:
            raise ValueError("the emulator needs at least one access key to verify requests")
        self.state = EmulatorState(state_path or backend.data_dir / "emulator.db")
        self.actions = Actions(backend, self.state, stale_reads=stale_reads)
        self.access_keys = dict(access_keys)
        self.max_body = max_body
        self.throttle = dict(throttle or {})
        self._throttle_lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = connection_timeout  # socket timeout: an idle connection ends

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the default logs the URL, which may hold a password

            def log_error(self, format: str, *args: Any) -> None:
                pass  # the same: e.g. "Bad request version" repeats the request line

            def do_POST(self) -> None:
                outer._handle(self)

            do_GET = do_POST

        slots = threading.BoundedSemaphore(max_connections)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def process_request(self, request: Any, client_address: Any) -> None:
                # A thread per connection, up to a bound: past it a connection is closed at
                # once, so idle or slow clients cannot hold every thread.
                if not slots.acquire(blocking=False):
                    self.shutdown_request(request)
                    return
                super().process_request(request, client_address)

            def process_request_thread(self, request: Any, client_address: Any) -> None:
                try:
                    super().process_request_thread(request, client_address)
                finally:
                    slots.release()

            def handle_error(self, request: Any, client_address: Any) -> None:
                # A connection that broke (or timed out) mid-request: nothing of it is logged.
                log.debug("emulator: a connection ended abnormally")

        self.httpd = Server((host, port), Handler)
        self._thread: threading.Thread | None = None

    @property
    def emulator(self) -> Actions:
        return self.actions

    @property
    def endpoint(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def _body(self, request: BaseHTTPRequestHandler) -> bytes:
        """The body, bounded before it is read; a length that is not a number is refused."""
        if request.headers.get("Transfer-Encoding"):
            raise errors.InvalidParameter("Transfer-Encoding", "is not supported; send a length")
        raw = (request.headers.get("Content-Length") or "0").strip()
        if not raw.isdigit() or len(raw) > 12:
            raise errors.InvalidParameter("Content-Length", "must be a number of bytes")
        length = int(raw)
        if length > self.max_body:
            raise errors.BodyTooLarge(f"the body is larger than {self.max_body} bytes")
        return request.rfile.read(length) if length else b""

    def _dispatch(self, request: BaseHTTPRequestHandler, action: str) -> dict[str, Any]:
        body = self._body(request)
        url = urlsplit(request.path)
        query = parse_qsl(url.query, keep_blank_values=True)
        headers = {k.lower(): v for k, v in request.headers.items()}
        verify(request.command, url.path, query, headers, body, self.access_keys)
        if not self.state.fresh_nonce(headers.get("x-acs-signature-nonce", ""), NONCE_HORIZON):
            raise errors.SignatureNonceUsed()
        if headers.get("x-acs-version") != API_VERSION:
            raise errors.InvalidVersion(f"only version {API_VERSION} of the ECI API is served")
        if action not in REQUESTS:
            raise errors.InvalidAction()
        with self._throttle_lock:
            if self.throttle.get(action, 0) > 0:
                self.throttle[action] -= 1
                raise errors.Throttled()
        pairs = list(query)
        if body and "form" in headers.get("content-type", ""):
            try:
                pairs += parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
            except UnicodeDecodeError:
                raise errors.InvalidParameter("(body)", "is not UTF-8 form data") from None
        answer = self.actions.call(action, parse(action, pairs))
        return answer.to_map()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        request_id = secrets.token_hex(16).upper()
        action = request.headers.get("x-acs-action") or ""
        shown = action if action in REQUESTS else "-"  # only a served action name is logged
        status, payload = 200, {}
        try:
            payload = self._dispatch(request, action)
        except SignatureError as err:
            status = 404 if err.code.endswith("NotFound") else 400
            payload = {"Code": err.code, "Message": str(err)}
        except errors.EciError as err:
            status, payload = err.status, {"Code": err.code, "Message": err.message}
        except Exception as err:  # a bug: answer 500 without details that could hold secrets
            frames = "".join(traceback.format_tb(err.__traceback__))  # code lines, no values
            log.error("emulator: %s failed with %s\n%s", shown, type(err).__name__, frames)
            status, payload = 500, {"Code": "InternalError", "Message": "the emulator failed"}
        payload = {"RequestId": request_id, **payload}
        if status != 200:
            payload.setdefault("HostId", "eci.emulator.local")
        data = json.dumps(payload).encode()
        log.info("%s %s", shown, status)
        try:
            request.send_response(status)
            request.send_header("Content-Type", "application/json;charset=utf-8")
            request.send_header("Content-Length", str(len(data)))
            request.send_header("x-acs-request-id", request_id)
            if status != 200:
                request.send_header("Connection", "close")  # a body may be left unread
                request.close_connection = True
            request.end_headers()
            request.wfile.write(data)
        except OSError:
            log.debug("emulator: the client went away before the answer")

    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.state.close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
