"""The runtime's own system calls, against the kernel: inotify waits, cgroup moves."""

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from eci_imagecache.runtime import host
from eci_imagecache.runtime.shim import _started


def test_a_wait_for_a_pid_file_wakes_when_the_file_is_written(tmp_path: Path):
    pid_file = tmp_path / "pid"
    with host.DirectoryWatch(tmp_path) as watch:
        began = time.time()
        proc = subprocess.Popen(
            ["sh", "-c", f"sleep 0.3; echo 42 > {pid_file}; sleep 30"], stdin=subprocess.DEVNULL
        )
        try:
            started = _started(proc, pid_file, watch)
            assert proc.poll() is None  # woken by the file, not by the process's end
        finally:
            proc.kill()
            proc.wait()
    assert started is not None and started - began >= 0.3
    assert pid_file.read_text() == "42\n"


def test_a_wait_for_a_pid_file_ends_when_the_process_ends_without_it(tmp_path: Path):
    with host.DirectoryWatch(tmp_path) as watch:
        (tmp_path / "other").write_text("not the pid file")  # an event that is not it
        proc = subprocess.Popen(["sh", "-c", "sleep 0.2; exit 3"], stdin=subprocess.DEVNULL)
        assert _started(proc, tmp_path / "pid", watch) is None
        assert proc.wait() == 3


def test_cgroup_moves_kept_warm_leave_the_process_in_its_cgroups():
    if os.geteuid() != 0:
        pytest.skip("moving a process between cgroups needs root")
    procs = host.own_cgroup_procs()
    if procs is None:
        pytest.skip("no cgroup v1 hierarchy here (nothing to keep warm)")
    # The kernel lists this process in the cgroup the moves write to.
    assert str(os.getpid()) in procs.read_text().split()
    before = Path("/proc/self/cgroup").read_text()
    moves = host.CgroupMoves(procs)
    keeper = threading.Thread(target=moves.keep, args=(5.0,))
    keeper.start()
    time.sleep(0.1)
    moves.stop.set()
    keeper.join(5)
    assert not keeper.is_alive()  # stopped when told, well before its limit
    assert Path("/proc/self/cgroup").read_text() == before


def test_writable_layers_are_measured_as_du_measures_them(tmp_path: Path):
    """Allocated blocks, a file with several links once, links not followed (GNU du agrees)."""
    from eci_imagecache.runtime.shim import writable_bytes

    upper = tmp_path / "upper"
    (upper / "a/b").mkdir(parents=True)
    (upper / "a/b/data").write_bytes(os.urandom(1 << 20))
    os.link(upper / "a/b/data", upper / "again")
    with open(upper / "sparse", "wb") as sparse:
        sparse.truncate(100 << 20)  # 100 MiB that take no room
    os.symlink("/usr", upper / "usr")
    du = subprocess.run(["du", "-s", "-B1", str(upper)], capture_output=True, text=True, check=True)
    measured = writable_bytes([upper]) + upper.stat().st_blocks * 512  # du counts the top too
    assert measured == int(du.stdout.split()[0])
    assert (1 << 20) <= measured < (2 << 20)
