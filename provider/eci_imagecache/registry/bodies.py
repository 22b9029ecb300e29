"""Blob bodies, read with the standard library's ``http.client``.

httpx does everything else for the registry client (challenges, tokens, manifests, and the HEAD
that checks a blob before it is fetched), but it parses HTTP/1.1 in Python: a 400 MB image cost
~0.7 s of CPU with the GIL held in its parser, which capped a build at about half of what this
machine copies from the registry to disk. ``http.client`` reads a body in C, a megabyte per call,
with the GIL released while it waits, so the hash and the write of one blob overlap the download
of another.

What httpx would do for these requests is done here too:
- redirects are followed (up to ``max_redirects``), and the ``Authorization`` header goes only to
  the registry's own origin (scheme, host and port), never to storage it redirects to;
- TLS is verified against certifi's roots, except for hosts listed as insecure;
- proxies come from the environment (``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``);
- connections are kept alive and reused, a few per origin.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
import urllib.request
from dataclasses import dataclass
from functools import cache
from urllib.parse import urljoin, urlsplit

import certifi

REDIRECTS = {301, 302, 303, 307, 308}
IDLE_PER_ORIGIN = 8
CHUNK = 1 << 20  # one read: large enough that per-call costs vanish beside the copy


class TooManyRedirects(Exception):
    pass


@cache
def _tls(verify: bool) -> ssl.SSLContext:
    if verify:
        return ssl.create_default_context(cafile=certifi.where())
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


def _proxy_for(url: str) -> str | None:
    parts = urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass(parts.netloc):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


@dataclass(frozen=True)
class _Route:
    """Where a connection goes: the target origin, through a proxy or not."""

    scheme: str
    host: str
    port: int
    verify: bool
    proxy: str | None

    def connect(self, timeout: float) -> http.client.HTTPConnection:
        if self.proxy is None:
            if self.scheme == "https":
                return http.client.HTTPSConnection(
                    self.host, self.port, timeout=timeout, context=_tls(self.verify)
                )
            return http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        proxy = urlsplit(self.proxy)
        proxy_port = proxy.port or (443 if proxy.scheme == "https" else 80)
        if self.scheme == "https":  # a tunnel through the proxy, TLS end to end
            connection = http.client.HTTPSConnection(
                proxy.hostname or "", proxy_port, timeout=timeout, context=_tls(self.verify)
            )
            connection.set_tunnel(self.host, self.port)
            return connection
        return http.client.HTTPConnection(proxy.hostname or "", proxy_port, timeout=timeout)


_idle: dict[_Route, list[http.client.HTTPConnection]] = {}
_idle_lock = threading.Lock()


def _take(route: _Route) -> http.client.HTTPConnection | None:
    with _idle_lock:
        pool = _idle.get(route)
        return pool.pop() if pool else None


def _give_back(route: _Route, connection: http.client.HTTPConnection) -> None:
    with _idle_lock:
        pool = _idle.setdefault(route, [])
        if len(pool) < IDLE_PER_ORIGIN:
            pool.append(connection)
            return
    connection.close()


class Body:
    """An open blob answer: ``status``, ``header(name)``, ``read()`` a chunk at a time (b"" at
    the end), then ``close()``; a body read to its end leaves its connection for the next one."""

    def __init__(
        self,
        route: _Route,
        connection: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
        url: str,
        deadline: float,
        read_timeout: float,
    ) -> None:
        self.route = route
        self.connection = connection
        self.response = response
        self.url = url
        self.status = response.status
        self.deadline = deadline
        self.read_timeout = read_timeout
        self.ended = False  # read to its end: the connection may serve another request

    def header(self, name: str) -> str | None:
        return self.response.getheader(name)

    def read(self) -> bytes:
        """The next chunk; waits at most the read timeout (or what is left of the deadline)."""
        sock = self.connection.sock
        if sock is not None:
            sock.settimeout(max(0.01, min(self.read_timeout, self.deadline - time.monotonic())))
        chunk = self.response.read1(CHUNK)
        self.ended = not chunk
        return chunk

    def drain(self, limit: int = 1 << 16) -> None:
        """Read and drop what is left of a short body (a redirect's); a longer one is left
        unread, and its connection is not reused."""
        while limit > 0 and (chunk := self.read()):
            limit -= len(chunk)

    def close(self) -> None:
        reusable = self.ended and not self.response.will_close
        self.response.close()
        if reusable:
            _give_back(self.route, self.connection)
        else:
            self.connection.close()


def open_body(
    url: str,
    headers: dict[str, str],
    *,
    verify: bool,
    max_redirects: int,
    connect_timeout: float,
    read_timeout: float,
    deadline: float,
) -> Body:
    """GET ``url`` and return its answer once its headers have arrived, following redirects.
    ``headers`` go to the first URL's origin; to another origin without ``Authorization``.
    Errors are ``OSError`` / ``http.client.HTTPException`` (nothing was read) or
    :class:`TooManyRedirects`."""
    home = _origin(url)
    for _ in range(max_redirects + 1):
        scheme, host, port = _origin(url)
        sent = headers if (scheme, host, port) == home else _without_auth(headers)
        body = _get(url, sent, verify, connect_timeout, read_timeout, deadline)
        location = body.header("Location")
        if body.status not in REDIRECTS or not location:
            return body
        body.drain()  # the redirect's own short body: the connection can serve again
        body.close()
        url = urljoin(url, location)
    raise TooManyRedirects(url)


def _without_auth(headers: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.lower() != "authorization"}


def _get(
    url: str,
    headers: dict[str, str],
    verify: bool,
    connect_timeout: float,
    read_timeout: float,
    deadline: float,
) -> Body:
    parts = urlsplit(url)
    scheme, host, port = _origin(url)
    proxy = _proxy_for(url)
    route = _Route(scheme, host, port, verify, proxy)
    if proxy is not None and scheme == "http":
        target = url  # a forward proxy is asked for the absolute URL
    else:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    left = max(0.01, deadline - time.monotonic())
    kept = _take(route)
    if kept is not None:
        try:
            return _send(route, kept, target, headers, url, deadline, read_timeout)
        except (OSError, http.client.HTTPException):
            kept.close()  # a kept-alive connection the server has closed: take a new one
    connection = route.connect(min(connect_timeout, left))
    try:
        connection.connect()
        return _send(route, connection, target, headers, url, deadline, read_timeout)
    except BaseException:
        connection.close()
        raise


def _send(
    route: _Route,
    connection: http.client.HTTPConnection,
    target: str,
    headers: dict[str, str],
    url: str,
    deadline: float,
    read_timeout: float,
) -> Body:
    assert connection.sock is not None
    connection.sock.settimeout(max(0.01, min(read_timeout, deadline - time.monotonic())))
    connection.request("GET", target, headers=headers)
    return Body(route, connection, connection.getresponse(), url, deadline, read_timeout)
