"""The fork server: one process, its imports done, that forks a shim per group on request.

A shim started as a program (``python -S -m eci_imagecache.runtime.shim``) costs an
interpreter's start and its imports (~56 ms of CPU here) before it can take a group, and a burst
of N starts pays that N times. The fork server pays it once: asked for a shim, it forks one
(a few ms), which then gets ready exactly as a shim started as a program does (``shim.serve``:
its own session, mount and network namespaces, crun made read-only, the state opened).

- One server per user, Python and runtime code (and mount and pid namespace), for every data
  dir (a request names the groups directory and the state database). Its address is in the
  abstract Unix socket namespace, derived from those: nothing is left on disk, a dead server's
  address is free at once, and binding it is the lock that keeps a single one running. A
  process that finds none starts one (``Runtime`` asks in the background when it opens); it
  ends after ``IDLE_SECONDS`` without a request (``ECI_IMAGECACHE_FORKSERVER_IDLE``; 0: no
  fork server, every shim is started as a program), or soon after its code on disk is
  replaced (an upgrade: clients then ask at another address), and the next ``pulumi up``
  within that time finds it.
- Only processes of its own user are served, and a client talks only to a server of its own
  user (SO_PEERCRED, both ways): a request passes the shim's descriptors, and through them go a
  group's published ports.
- Each shim is forked twice (the middle process exits at once): its parent is init, not the
  server, so it outlives the server as it outlives the process that asked for it, and it leads
  a session of its own (``Runtime.stop`` kills its session).
- Fork safety: the server has a single thread (a fork copies only the calling one: a lock
  another thread held would stay held in the child) and holds no database connection; the
  shim closes every descriptor but its own two and the standard three before anything else,
  and takes its requester's environment, umask and resource limits (crun and the containers
  run with them, as they would had the requester started it) and working directory ``/``.
- A server that cannot be started, reached or does not answer: ``ForkServerUnavailable``; the
  caller starts its shim as a program instead (and does so for ``RETRY_SECONDS`` before it
  asks a server again).
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import json
import os
import resource
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from . import host, shim

IDLE_SECONDS = 600.0  # without a request, the server ends (``ECI_IMAGECACHE_FORKSERVER_IDLE``)
ANSWER_SECONDS = 10.0  # a server that does not answer a request within this is given up
REQUEST_SECONDS = 2.0  # the server waits this long for a request once connected
START_SECONDS = 10.0  # a server started listens within this, or is given up
RETRY_SECONDS = 60.0  # after a server failed to answer, shims start as programs this long
CHECK_SECONDS = 30.0  # how often an idle server checks whether its code was replaced
BACKLOG = 512  # requests waiting to be served (a burst's worth)
MAX_REQUEST = 1 << 20  # bytes of a request (its environment, mostly)
PROCESS_NAME = "eci-forkserver"
_CREDENTIALS = struct.Struct("3i")  # SO_PEERCRED: pid, uid, gid


class ForkServerUnavailable(OSError):
    """No shim from a fork server (the message says why): start one as a program instead."""


def idle_seconds() -> float:
    """How long a server waits for a request before it ends (0: no fork server at all)."""
    try:
        return max(0.0, float(os.environ.get("ECI_IMAGECACHE_FORKSERVER_IDLE", IDLE_SECONDS)))
    except ValueError:
        return IDLE_SECONDS


_address: bytes | None = None


def address() -> bytes:
    """The server's abstract socket address for this user, Python and runtime code (as loaded
    by this process: a server never runs code other than its clients')."""
    global _address
    if _address is None:
        _address = _code_address()
    return _address


def _code_address() -> bytes:
    """The address for the runtime code on disk now."""
    here = Path(__file__).resolve().parent
    code = sorted(
        (entry.name, entry.stat().st_mtime_ns, entry.stat().st_size)
        for entry in os.scandir(here)
        if entry.name.endswith(".py")
    )
    # Its shims see its mounts and its pids: a server per mount and pid namespace too (the
    # abstract address is per network namespace already).
    spaces = [os.stat(f"/proc/self/ns/{kind}").st_ino for kind in ("mnt", "pid")]
    key = json.dumps([os.getuid(), sys.executable, sys.version, str(here), code, spaces])
    return b"\0eci-imagecache-forkserver-" + hashlib.sha256(key.encode()).hexdigest()[:32].encode()


# the client ---------------------------------------------------------------------------------

_starting = threading.Lock()  # one server start at a time in this process
_given_up_until = 0.0  # monotonic time until which shims start as programs


def spawn(groups_dir: Path, state_path: Path, crun: str | None, tell: int, go: int) -> int:
    """A shim forked by the server (started if none runs), for ``shim.serve`` with these
    arguments; ``tell`` and ``go`` are passed to it (the caller closes its own). Returns its
    pid. ForkServerUnavailable: none was made (or one was, and ends as soon as the caller
    closes its side of ``go``)."""
    global _given_up_until
    if not usable():
        raise ForkServerUnavailable(
            "the fork server is off (ECI_IMAGECACHE_FORKSERVER_IDLE=0)"
            if idle_seconds() == 0
            else "the fork server did not answer a moment ago"
        )
    request = json.dumps(
        {
            "groups_dir": str(groups_dir),
            "state": str(state_path),
            "crun": crun,
            # What a program it started would inherit: for the shim, crun and the containers.
            "env": dict(os.environ),
            "umask": _umask(),
            "rlimits": {name: resource.getrlimit(number) for name, number in _rlimits().items()},
        }
    ).encode()
    with connect() as server:
        try:
            socket.send_fds(server, [request], [tell, go])
        except OSError as err:  # e.g. an environment too large for one message
            raise ForkServerUnavailable(f"asking the fork server: {err}") from err
        try:
            answer = server.recv(4096)
        except TimeoutError as err:
            _given_up_until = time.monotonic() + RETRY_SECONDS
            raise ForkServerUnavailable("the fork server did not answer") from err
        except OSError as err:  # it ended (idle) as the request came: the next starts one
            raise ForkServerUnavailable(f"the fork server ended: {err}") from err
    if not answer:
        raise ForkServerUnavailable("the fork server ended before it answered")
    reply = json.loads(answer)
    if "pid" not in reply:
        raise ForkServerUnavailable(f"the fork server made no shim: {reply.get('error')}")
    return int(reply["pid"])


def _rlimits() -> dict[str, int]:
    """The resource limits this system has, by name."""
    return {name: getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_")}


def _umask() -> int | None:
    """This process's umask (read, not set: setting it to read it would race other threads)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return None


def usable() -> bool:
    """Whether to ask a fork server: it is not off, and did not fail to answer a moment ago."""
    return idle_seconds() > 0 and time.monotonic() >= _given_up_until


def connect() -> socket.socket:
    """A connection to the server, which is started if none listens."""
    for attempt in range(2):
        try:
            return _connect(ANSWER_SECONDS)
        except ConnectionRefusedError:  # nothing listens at the address
            if attempt:
                break
            start_server()
    raise ForkServerUnavailable("the fork server started does not listen")


def _connect(timeout: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.settimeout(timeout)
    try:
        sock.connect(address())
        _, uid, _ = _CREDENTIALS.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size)
        )
    except ConnectionRefusedError:
        sock.close()
        raise
    except OSError as err:
        sock.close()
        raise ForkServerUnavailable(f"connecting to the fork server: {err}") from err
    if uid != os.getuid():
        sock.close()
        raise ForkServerUnavailable(f"the fork server's address is held by user {uid}")
    return sock


def running() -> bool:
    """Whether a server listens (and answers to this user)."""
    return server_pid() is not None


def server_pid() -> int | None:
    """The pid of the server listening (of this user), or None."""
    try:
        server = _connect(ANSWER_SECONDS)
    except (ConnectionRefusedError, ForkServerUnavailable):
        return None
    with server:
        pid, _, _ = _CREDENTIALS.unpack(
            server.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size)
        )
    return pid


def start_server() -> None:
    """Start a server unless one listens; returns once one does. ForkServerUnavailable: none
    listens within ``START_SECONDS``."""
    with _starting:
        if running():  # another thread of this process started it meanwhile
            return
        ready, tell_ready = os.pipe()
        try:
            process = subprocess.Popen(
                [sys.executable, "-S", "-m", __name__, str(tell_ready)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd="/",
                start_new_session=True,
                pass_fds=(tell_ready,),
                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
            )
        except OSError as err:
            os.close(ready)
            raise ForkServerUnavailable(f"starting the fork server: {err}") from err
        finally:
            os.close(tell_ready)
        # Reaped if it ends while this process lives; it outlives this process otherwise.
        threading.Thread(target=process.wait, daemon=True).start()
        with open(ready, "rb", buffering=0) as said:
            # A byte once it listens (or found another listening); nothing if it failed.
            if not select.select([said], [], [], START_SECONDS)[0] or not said.read(1):
                raise ForkServerUnavailable("the fork server did not start")


def stop_server() -> bool:
    """End the server (its shims go on); whether one was listening."""
    try:
        server = _connect(ANSWER_SECONDS)
    except (ConnectionRefusedError, ForkServerUnavailable):
        return False
    with server:
        server.send(json.dumps({"stop": True}).encode())
        server.recv(16)  # the server closes the connection as it ends
    return True


# the server ---------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    """``<ready fd>``: listen, tell the starter (a byte on ``<ready fd>``), serve until idle."""
    host.name_process(PROCESS_NAME)
    said = int(argv[0])
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        listener.bind(address())
    except OSError as err:
        if err.errno != errno.EADDRINUSE:
            raise
        os.write(said, b"1")  # another server listens: the starter uses that one
        return 0
    listener.listen(BACKLOG)
    os.write(said, b"1")
    os.close(said)
    idle = idle_seconds() or IDLE_SECONDS
    listener.settimeout(min(idle, CHECK_SECONDS))
    last = time.monotonic()
    while True:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            if time.monotonic() - last >= idle:
                return 0  # idle: the next process that starts a group starts a server again
            with contextlib.suppress(OSError):
                if _code_address() != address():
                    return 0  # its code was replaced (an upgrade): clients ask another now
            continue
        last = time.monotonic()
        with conn:
            # A requester sends as it connects: one that does not holds up every other.
            conn.settimeout(REQUEST_SECONDS)
            try:
                if not serve(listener, conn):
                    listener.close()  # before the requester hears the end: the address is free
                    return 0
            except OSError as err:
                print(f"forkserver: {err}", file=sys.stderr)


def serve(listener: socket.socket, conn: socket.socket) -> bool:
    """Answer one request (fork a shim, or stop); False: stop serving."""
    _, uid, _ = _CREDENTIALS.unpack(
        conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size)
    )
    if uid != os.getuid():
        return True  # another user's: closed unanswered
    message, fds, flags, _ = socket.recv_fds(conn, MAX_REQUEST, 2)
    try:
        if not message:
            return True  # a probe (``running``): connected, and gone
        request = json.loads(message)
        if request.get("stop"):
            return False
        if len(fds) != 2 or flags & socket.MSG_CTRUNC:
            conn.send(json.dumps({"error": "a request passes two descriptors"}).encode())
            return True
        pid = fork_shim(listener, conn, request, fds)
        conn.send(json.dumps({"pid": pid}).encode())
        return True
    finally:
        for fd in fds:
            os.close(fd)


def fork_shim(listener: socket.socket, conn: socket.socket, request: dict, fds: list[int]) -> int:
    """Fork the shim (through a middle process that exits at once: its parent is init);
    returns its pid."""
    pid_out, pid_in = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # or the children write it again
    # The server's objects out of the collector's reach: a collection in the shim would write
    # to each (its header), copying every page the two share.
    gc.freeze()
    middle = os.fork()
    if middle == 0:  # the middle process
        try:
            os.close(pid_out)
            child = os.fork()
            if child == 0:
                os.close(pid_in)
                _become_shim(listener, conn, request, fds)  # never returns
            os.write(pid_in, str(child).encode())
        finally:
            os._exit(0)
    os.close(pid_in)
    try:
        with open(pid_out, "rb", buffering=0) as told:
            said = told.read()
    finally:
        os.waitpid(middle, 0)
    if not said:
        raise OSError("the shim could not be forked")
    return int(said)


def _own_pages() -> None:
    """Copy now the pages the shim shares with the server, and would copy one by one (a fault
    each) as its start touches their objects: a collection writes to every object's header.
    ~4 ms, done while the shim waits for a group (not when one is on its way already)."""
    gc.unfreeze()
    gc.collect()


def _become_shim(
    listener: socket.socket, conn: socket.socket, request: dict, fds: list[int]
) -> None:
    """In the forked shim: let go of everything of the server's, then serve as a shim."""
    code = 1
    try:
        os.setsid()
        for sock in (listener, conn):
            os.close(sock.detach())  # the objects no longer own a descriptor to close later
        tell, go = fds
        keep = {0, 1, 2, tell, go}
        for name in os.listdir("/proc/self/fd"):
            if int(name) not in keep:
                with contextlib.suppress(OSError):  # the listing's own, closed already
                    os.close(int(name))
        os.environ.clear()
        os.environ.update(request["env"])
        if request.get("umask") is not None:
            os.umask(request["umask"])
        limits = _rlimits()
        for name, (soft, hard) in request.get("rlimits", {}).items():
            with contextlib.suppress(OSError, ValueError, KeyError):  # as the server's, then
                resource.setrlimit(limits[name], (soft, hard))
        os.chdir("/")
        code = shim.serve(
            Path(request["groups_dir"]),
            Path(request["state"]),
            tell,
            go,
            request["crun"],
            idle=_own_pages,
        )
    except BaseException:  # told (to shim.log, or nowhere), and the process ends
        traceback.print_exc()
    finally:
        # What the program's exit would do: its database connections closed (the last to
        # close folds the log in), its output flushed.
        gc.collect()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
