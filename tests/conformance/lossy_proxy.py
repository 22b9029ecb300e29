"""A loopback TCP proxy that forwards HTTP/1.1 requests and can lose an answer.

For a chosen action (the ``x-acs-action`` header), the request reaches the server and is
served, but the answer is dropped and the connection closed: the client sees a network failure
after the work was done, the case a ClientToken exists for. Bytes pass through unchanged (the
signed Host header included).
"""

from __future__ import annotations

import socket
import threading


def _read_message(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


class LossyProxy:
    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.lose: dict[str, int] = {}  # action -> answers still to lose
        self.lost: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            while True:
                request = _read_message(client)
                if not request:
                    return
                with socket.create_connection(self.upstream) as upstream:
                    upstream.sendall(request)
                    answer = _read_message(upstream)
                action = next(
                    (
                        line.split(b":", 1)[1].strip().decode()
                        for line in request.split(b"\r\n")
                        if line.lower().startswith(b"x-acs-action:")
                    ),
                    "",
                )
                if self.lose.get(action, 0) > 0:
                    self.lose[action] -= 1
                    self.lost.append(action)
                    return  # served upstream, never answered here
                client.sendall(answer)
                if b"connection: close" in answer.lower().split(b"\r\n\r\n")[0]:
                    return

    def close(self) -> None:
        self.listener.close()
