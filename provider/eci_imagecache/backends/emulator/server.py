"""The HTTP side of the emulator: the official clients' RPC-style requests, signed.

Two signatures are served, as by Alibaba Cloud's gateway: ACS3-HMAC-SHA256 (``Authorization``
and ``x-acs-*`` headers: the Python SDK, the Node SDK by default) and the RPC signature v1
(``Signature``, ``SignatureNonce``, ``Timestamp`` ... as parameters: the Go SDK, the aliyun CLI,
Terraform, the Node SDK with ``signatureAlgorithm: "v2"``). Parameters come from the query
string and from a form body, flattened (``Container.1.Name``). In order: the body is bounded
(before anything reads it), the request waits for a turn (or is throttled), the signature and
its time are checked, the nonce is spent (nonces persist across restarts), then the parameters
are read through the SDK's request model (``params``) and the action answers (``actions``), in
JSON or, for ``Format=XML``, XML (``render``). Errors (``errors``) are mapped here, once.
Passwords travel as parameters, so no request value is ever logged or echoed: logs name a served
action and the status only.

Under load (see :class:`Limits`): a listen backlog sized for bursts; at most ``max_requests``
answered at once, others wait up to ``queue_wait`` seconds and are then answered with the
gateway's ``Throttling.User`` (which the SDKs back off from and retry), never dropped; past
``max_connections`` open connections the longest-idle keep-alive connection is closed to make
room and answers carry ``Connection: close``.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..local.backend import LocalBackend
from . import errors
from .actions import Actions
from .params import REQUESTS, parse, unflatten
from .render import render
from .signing import MAX_CLOCK_SKEW, SignatureError, verify, verify_rpc_v1
from .state import EmulatorState

log = logging.getLogger("eci_imagecache.emulator")
API_VERSION = "2018-08-08"
# Parameters travel in the query string or a form body; a body is bounded before it is read.
MAX_BODY = 1024 * 1024
# A nonce is remembered as long as a request carrying it could still be accepted (its date
# within the allowed skew either way), so forgetting it never lets a replay in.
NONCE_HORIZON = 2 * MAX_CLOCK_SKEW.total_seconds()

__all__ = ["API_VERSION", "EmulatorServer", "Limits", "unflatten"]


@dataclass(frozen=True)
class Limits:
    """How much the emulator takes at once, and what it does past that."""

    max_requests: int = 16  # answered at once (the work is CPU-bound: more only queue)
    queue_wait: float = 5.0  # seconds a request waits for a turn before Throttling.User
    max_connections: int = 256  # open connections before idle ones give way
    backlog: int = 1024  # the listen queue: a burst of new clients waits, not refused
    retry_after_ms: int = 100  # what a throttled client is told to wait


@dataclass
class Exchange:
    """What is known of a request so far, to answer it (and its errors) the way it asked."""

    action: str = ""
    format: str = "JSON"
    body_read: bool = False


class Connections:
    """Open connections and which of them are idle (waiting for their next request)."""

    def __init__(self, most: int) -> None:
        self.most = most
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._idle: dict[socket.socket, float] = {}

    def admit(self, sock: socket.socket) -> bool:
        """Room for a new connection: at the bound the longest-idle one is closed for it. Only
        past twice the bound (every connection busy) is a new one closed unanswered."""
        with self._lock:
            if len(self._open) >= self.most and self._idle:
                oldest = min(self._idle, key=self._idle.__getitem__)
                del self._idle[oldest]
                with suppress(OSError):  # its thread's read ends, and the thread leaves
                    oldest.shutdown(socket.SHUT_RDWR)
            if len(self._open) >= 2 * self.most:
                return False
            self._open.add(sock)
            # Idle from its accept (in the order clients connected), not from when its thread
            # first ran: threads start in no set order.
            self._idle[sock] = time.monotonic()
            return True

    def idle(self, sock: socket.socket) -> None:
        """Waiting for its next request line: idle since now, or still since its accept."""
        with self._lock:
            if sock in self._open:
                self._idle.setdefault(sock, time.monotonic())

    def busy(self, sock: socket.socket) -> None:
        with self._lock:
            self._idle.pop(sock, None)

    def leave(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)
            self._idle.pop(sock, None)

    def crowded(self) -> bool:
        """Keep-alive is for when there is room: past the bound, answers close."""
        with self._lock:
            return len(self._open) >= self.most


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
        limits: Limits | None = None,
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
        self.limits = limits or Limits()
        self.throttle = dict(throttle or {})
        self._throttle_lock = threading.Lock()
        self._turns = threading.BoundedSemaphore(self.limits.max_requests)
        self.connections = Connections(self.limits.max_connections)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = connection_timeout  # socket timeout: an idle connection ends

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the default logs the URL, which may hold a password

            def log_error(self, format: str, *args: Any) -> None:
                pass  # the same: e.g. "Bad request version" repeats the request line

            def handle_one_request(self) -> None:
                outer.connections.idle(self.connection)  # until its request line arrives
                try:
                    super().handle_one_request()
                finally:
                    outer.connections.busy(self.connection)

            def parse_request(self) -> bool:
                outer.connections.busy(self.connection)  # its request line has arrived
                return super().parse_request()

            def do_POST(self) -> None:
                outer._handle(self)

            do_GET = do_POST

        connections = self.connections

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = self.limits.backlog  # the listen backlog

            def process_request(self, request: Any, client_address: Any) -> None:
                if not connections.admit(request):
                    self.shutdown_request(request)  # the last resort: every thread busy
                    return
                super().process_request(request, client_address)

            def process_request_thread(self, request: Any, client_address: Any) -> None:
                try:
                    super().process_request_thread(request, client_address)
                finally:
                    connections.leave(request)

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
        # An IPv4 or IPv6 listener's address: a text host (only AF_UNIX's are bytes).
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

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

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """One of ``max_requests`` turns, waited for up to ``queue_wait``; else throttled."""
        if not self._turns.acquire(timeout=self.limits.queue_wait):
            raise errors.Throttled(self.limits.retry_after_ms)
        try:
            yield
        finally:
            self._turns.release()

    def _dispatch(self, request: BaseHTTPRequestHandler, exchange: Exchange) -> dict[str, Any]:
        body = self._body(request)
        exchange.body_read = True
        url = urlsplit(request.path)
        query = parse_qsl(url.query, keep_blank_values=True)
        headers = {k.lower(): v for k, v in request.headers.items()}
        form: list[tuple[str, str]] = []
        if body and "form" in headers.get("content-type", ""):
            try:
                form = parse_qsl(body.decode(), keep_blank_values=True)
            except UnicodeDecodeError:
                raise errors.InvalidParameter("(body)", "is not UTF-8 form data") from None
        params = query + form
        names = {k for k, _ in params}
        fmt = next((v for k, v in params if k == "Format"), "JSON").upper()
        if fmt not in ("JSON", "XML"):
            raise errors.UnsupportedFormat()
        exchange.format = fmt
        with self._turn():
            if "authorization" in headers or not names & {"Signature", "Action"}:
                # ACS3: the query is signed, the body through its hash; the rest are headers.
                verify(request.command, url.path, query, headers, body, self.access_keys)
                action = headers.get("x-acs-action", "")
                version = headers.get("x-acs-version")
                nonce = headers.get("x-acs-signature-nonce", "")
                params = [(k, v) for k, v in params if k != "Format"]
            else:
                signed = verify_rpc_v1(request.command, params, self.access_keys)
                action, version, nonce = signed.action, signed.version, signed.nonce
                params = signed.params
            if action in REQUESTS:
                exchange.action = action
            if not self.state.fresh_nonce(nonce, NONCE_HORIZON):
                raise errors.SignatureNonceUsed()
            if version != API_VERSION:
                raise errors.InvalidVersion(f"only version {API_VERSION} of the ECI API is served")
            if action not in REQUESTS:
                raise errors.InvalidAction()
            with self._throttle_lock:
                if self.throttle.get(action, 0) > 0:
                    self.throttle[action] -= 1
                    raise errors.Throttled(self.limits.retry_after_ms)
            answer = self.actions.call(action, parse(action, params))
        fields: dict[str, Any] = answer.to_map()  # the SDK's models are untyped
        return fields

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        request_id = secrets.token_hex(16).upper()
        exchange = Exchange()
        status, payload, extra_headers = 200, {}, {}
        try:
            payload = self._dispatch(request, exchange)
        except SignatureError as err:
            status = 404 if err.code.endswith("NotFound") else 400
            payload = {"Code": err.code, "Message": str(err)}
        except errors.EciError as err:
            status, payload = err.status, {"Code": err.code, "Message": err.message}
            if isinstance(err, errors.Throttled):
                extra_headers["x-acs-retry-after"] = str(err.retry_after_ms)
        except Exception as err:  # a bug: answer 500 without details that could hold secrets
            frames = "".join(traceback.format_tb(err.__traceback__))  # code lines, no values
            shown = exchange.action or "-"
            log.error("emulator: %s failed with %s\n%s", shown, type(err).__name__, frames)
            status, payload = 500, {"Code": "InternalError", "Message": "the emulator failed"}
        payload = {"RequestId": request_id, **payload}
        if status != 200:
            payload.setdefault("HostId", "eci.emulator.local")
        root = f"{exchange.action}Response" if status == 200 else "Error"
        data, content_type = render(payload, exchange.format, root)
        log.info("%s %s", exchange.action or "-", status)  # only a served action is named
        # A body left unread (an error before it was read) would be taken for the next request.
        close = (status != 200 and not exchange.body_read) or self.connections.crowded()
        try:
            request.send_response(status)
            request.send_header("Content-Type", content_type)
            request.send_header("Content-Length", str(len(data)))
            request.send_header("x-acs-request-id", request_id)
            for name, value in extra_headers.items():
                request.send_header(name, value)
            if close:
                request.send_header("Connection", "close")
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
