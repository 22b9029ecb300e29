"""Each group its own network: a network namespace with only a loopback, and its ports published
on a loopback address of the host that is the group's own.

- A group's shim moves into a new network namespace before it has a group (``private_network``,
  off the start's path), and its containers share that namespace (their OCI config has no
  network namespace of its own: crun's children stay in their parent's). There they see only
  ``lo``: neither the host's interfaces, its loopback services nor its traffic.
- Each group gets an address of its own in ``GROUP_NETWORK`` (127.77.0.0/16, on the host's
  loopback); the runtime binds one TCP listener per declared port at that address, in the
  host's namespace (``publish``), and hands them to the shim, whose ``Forwarder`` relays each
  connection to the same port on 127.0.0.1 inside the group. Two groups may both publish port
  8080: at two addresses.
- Relaying costs a second TCP connection over loopback per connection (measured with curl and
  busybox httpd: about 0.5-0.8 of the throughput inside the group).
- Nothing else: no outbound access (no veth, no NAT; a container reaches nothing outside its
  group), no UDP publishing, no address outside 127.0.0.0/8.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Iterable, Iterator

GROUP_NETWORK = "127.77.0.0/16"  # its 65,534 host addresses, on the host's loopback (lo)
BACKLOG = 128
MAX_CONNECTIONS = 256  # relayed at once per group; more are refused (reset)
BUFFER = 1 << 18  # bytes moved at once (a pipe this large: 1.5-2x the throughput of 64 KiB)
CONNECT_SECONDS = 5.0
MAX_PORTS = 253  # the descriptors one message passes to the shim (the kernel's SCM_MAX_FD)
BUSY_ADDRESSES = 64  # addresses tried whose port another process holds, before giving up

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1

_libc = ctypes.CDLL(None, use_errno=True)


class PublishError(OSError):
    """A group's ports cannot be published (the message names the address and port)."""


def private_network() -> None:
    """Move this process (single-threaded: every later thread follows) into a new network
    namespace and bring its loopback up: the only interface it has."""
    if _libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))


def candidates(used: Iterable[str]) -> Iterator[str]:
    """Addresses of ``GROUP_NETWORK`` that no group in ``used`` holds, lowest first."""
    taken = set(used)
    for host in range(1, (1 << 16) - 1):
        address = f"127.77.{host >> 8}.{host & 255}"
        if address not in taken:
            yield address


def publish(ports: list[int], used: Iterable[str]) -> tuple[str, list[socket.socket]]:
    """The group's address (one no group in ``used`` holds) and a listening socket on each of
    ``ports`` there, in this process's (the host's) network namespace. An address where another
    process holds one of the ports (another runtime's group) is passed over."""
    busy = 0
    for address in candidates(used):
        listeners: list[socket.socket] = []
        try:
            for port in ports:
                listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                listeners.append(listener)
                # A group started again binds while its predecessor's connections linger.
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind((address, port))
                listener.listen(BACKLOG)
        except OSError as err:
            for listener in listeners:
                listener.close()
            if err.errno != errno.EADDRINUSE:
                raise PublishError(f"publishing port {port} at {address}: {err.strerror}") from err
            busy += 1
            if busy == BUSY_ADDRESSES:
                raise PublishError(
                    f"publishing port {port}: in use at {busy} addresses of {GROUP_NETWORK} "
                    "(a process on this machine listening on all addresses holds it?)",
                ) from err
            continue
        return address, listeners
    raise PublishError(f"no address left in {GROUP_NETWORK} for the group")


class Forwarder:
    """Relays each connection accepted on the group's published listeners (bound in the host's
    namespace) to the same port on 127.0.0.1 in this process's namespace, the group's. A
    connection that nothing in the group accepts is reset, as a closed port's would be."""

    def __init__(self, listeners: list[socket.socket], limit: int = MAX_CONNECTIONS) -> None:
        self.listeners = listeners
        self.slots = threading.BoundedSemaphore(limit)

    def start(self) -> None:
        for listener in self.listeners:
            threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        for listener in self.listeners:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes its accept
            listener.close()

    def _accept(self, listener: socket.socket) -> None:
        port = listener.getsockname()[1]
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed: the group is stopping
            if not self.slots.acquire(blocking=False):
                _reset(client)
                continue
            threading.Thread(target=self._relay, args=(client, port), daemon=True).start()

    def _relay(self, client: socket.socket, port: int) -> None:
        try:
            inside = _connect(port)
            if inside is None:
                _reset(client)
                return
            inside.settimeout(None)
            with client, inside:
                back = threading.Thread(target=_pump, args=(inside, client), daemon=True)
                back.start()
                _pump(client, inside)
                back.join()
        finally:
            self.slots.release()


def _connect(port: int) -> socket.socket | None:
    """A connection to ``port`` inside the group: on 127.0.0.1, else on ::1 (a server that
    listens on IPv6 only), else None."""
    for loopback in ("127.0.0.1", "::1"):
        try:
            return socket.create_connection((loopback, port), CONNECT_SECONDS)
        except OSError:
            continue
    return None


def _pump(source: socket.socket, target: socket.socket) -> None:
    """Copy ``source`` to ``target`` until it ends, then end ``target``'s writing (a half-close
    passed on); a failure on either side ends both directions. The bytes go through a pipe
    (splice(2)): the kernel moves them, this process never copies them."""
    pipe: tuple[int, int] | None = None
    try:
        pipe = pipe_out, pipe_in = os.pipe()
        with contextlib.suppress(OSError):  # else the default (64 KiB): slower, as correct
            fcntl.fcntl(pipe_in, fcntl.F_SETPIPE_SZ, BUFFER)
        while count := os.splice(source.fileno(), pipe_in, BUFFER):
            while count:
                count -= os.splice(pipe_out, target.fileno(), count)
        target.shutdown(socket.SHUT_WR)
    except OSError:
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
    finally:
        for fd in pipe or ():
            os.close(fd)


def _reset(sock: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0), not an orderly end: the client sees a refusal."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
