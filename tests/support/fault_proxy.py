"""A loopback HTTP proxy in front of a real registry that injects faults on chosen requests; it
also serves as a forward proxy (``HTTP_PROXY``) to whatever absolute URL it is asked for."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import httpx

from .loopback import serve


@dataclass
class Fault:
    pattern: str  # regex on "METHOD /path"
    status: int | None = None  # answer this status instead of forwarding
    delay: float = 0.0  # sleep before answering
    corrupt: bool = False  # flip bytes in the forwarded body
    times: int = 1_000_000  # how many matching requests it applies to
    slow_body: float = 0.0  # seconds to sleep between body chunks


@dataclass
class FaultProxy:
    upstream: str  # http://127.0.0.1:PORT
    faults: list[Fault] = field(default_factory=list)
    hits: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        proxy = self
        # One pooled client for every forwarded request: a client per request costs a TLS
        # context each (tens of ms), enough to time out clients that fetch several blobs at once.
        upstream_client = httpx.Client(timeout=60)
        self._upstream_client = upstream_client

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                line = f"{self.command} {self.path}"
                proxy.hits.append(line)
                fault = proxy._fault_for(line)
                if fault and fault.delay:
                    time.sleep(fault.delay)
                if fault and fault.status:
                    body = b'{"errors":[{"code":"INJECTED"}]}'
                    self.send_response(fault.status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                # An absolute URL: a client using this as its forward (HTTP_PROXY) proxy.
                target = self.path if "://" in self.path else proxy.upstream + self.path
                upstream = upstream_client.request(
                    self.command, target, headers=headers, content=data
                )
                body = upstream.content
                if fault and fault.corrupt and body:
                    body = bytes([body[0] ^ 0xFF]) + body[1:]
                self.send_response(upstream.status_code)
                for key, value in upstream.headers.items():
                    if key.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                    ):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                if fault and fault.slow_body:
                    for start in range(0, len(body), 16384):
                        self.wfile.write(body[start : start + 16384])
                        self.wfile.flush()
                        time.sleep(fault.slow_body)
                else:
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = _handle

        self.server, self.thread = serve(Handler)

    def _fault_for(self, line: str) -> Fault | None:
        for fault in self.faults:
            if fault.times > 0 and re.search(fault.pattern, line):
                fault.times -= 1
                return fault
        return None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._upstream_client.close()
