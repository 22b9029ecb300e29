"""Anchors: our builds and starts against the engines a user would otherwise run, side by side in
one run, on the same ~387 MB image (a runnable busybox base and six layers shaped like a flink
image: bench_startup's) from the same registry on loopback.

- containerd (Debian's, driven by ``ctr``), run as a process this benchmark starts and stops,
  with its own root, state and socket under a temporary directory and its default overlayfs
  snapshotter; its containers run on crun (``ctr run --runc-binary``), as ours do.
- podman (Debian's) on crun, with its own storage (overlay) under a temporary directory.

Each ratio is the anchor's time over ours (above 1: we are faster), medians of interleaved
rounds:

- ``build_vs_containerd`` (and ``build_vs_podman``): fetch + verify + unpack of the image:
  ``ctr images pull`` into a fresh content store and snapshotter (containerd started before the
  clock runs), ``podman pull`` into fresh storage, and our cache build into a fresh data dir;
- ``start_vs_ctr_crun``, ``start_vs_podman``: one container started from local layers, from
  the call until its process runs: ``ctr run -d`` and ``podman run -d`` return once the
  container's task has started; ours is a group's create call until its first process runs
  (the runtime's record of it), with a supervisor (shim) kept ready as in a provider process;
- ``burst20_vs_ctr_crun``, ``burst100_vs_ctr_crun``: N started at once until all run: N
  ``ctr run -d`` at once until the last returns; N creates in N threads of one process (as
  Pulumi calls a provider's hooks) until the last group's first process runs (one finds the
  shim kept ready, the others each ask the fork server for one);
- ``first_start_vs_steady``: ours only, the start in a fresh process (every ``pulumi up`` has
  one) over the steady start, the two taken in turns (``first_start_ms_steady``). The clock
  starts once the backend has opened (its modules imported); opening it asks the fork server
  (``runtime/forkserver.py``) for a shim in the background. The fork server outlives the
  processes that use it (600 s after its last request), so here, as for the next ``pulumi up``
  within that time, it is running before the clock starts, as containerd's daemon is for
  ``ctr``. ``first_start_ms_no_fork_server`` is
  the same start with no fork server running (the first ``pulumi up`` after a boot or an idle
  spell: the fresh process starts the server), for reference; no target applies to it.

Containers of every engine get a network namespace of their own with only a loopback, as the
local backend's groups do (``ctr run`` without ``--net-host`` makes one and configures nothing
in it; ``podman run --network none``), so no engine pays for a network set-up the others skip.

crun refuses this kernel's hybrid cgroup layout (v1 controllers beside a v2 hierarchy that holds
controllers); our runtime drops the v2 mount in a mount namespace of its own
(runtime/shim.py ``Ready``), and containerd and podman are run the same way (``unshare -m``
with that mount gone).

``BENCH_QUICK=1`` shrinks the image to ~40 MB, runs fewer rounds, and skips an anchor that is
not installed (the table says so); the full run requires both.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from subprocess import DEVNULL, PIPE

import eci_imagecache
from benchmarks.bench_startup import push_set, start
from benchmarks.common import median, quick, report
from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.engine.models import ContainerGroupSpec, ImageCacheSpec
from eci_imagecache.runtime import forkserver, host
from eci_imagecache.testing.registry import ImageBuilder, RegistryServer

MIB = 1024 * 1024
IMAGE = "bench/flink:1.17"
# The runc shim keeps crun's state under this root by namespace, whatever containerd's own
# state dir: a namespace per run keeps a run that was killed from colliding with the next.
SHIM_STATE_ROOT = Path("/run/containerd/runc")
SNAPSHOTTER = "overlayfs"  # containerd's default, named so that it stays the one measured
READY_SECONDS = 10.0  # containerd answers within this, or the benchmark stops
POLL_SECONDS = 0.05
CLEANUP_WORKERS = 8


def private_mounts(argv: list[str]) -> list[str]:
    """``argv`` run in a mount namespace of its own without the cgroup v2 mount, on a host whose
    cgroups are hybrid (what our runtime's shims do before they run crun)."""
    if not host.cgroup_hybrid():
        return argv
    unmount = f'umount -l {host.UNIFIED} && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", unmount, "sh", *argv]


def run(argv: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv[:6])} ... failed: {done.stderr.strip()[-500:]}")
    return done


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return "unknown"
    return out.strip().splitlines()[0] if out.strip() else "unknown"


class Containerd:
    """A containerd of this benchmark's own: root, state, socket and config under ``work``."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.socket = work / "containerd.sock"
        self.log = work / "containerd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.crun = host.crun_binary() or "crun"
        self.namespace = f"bench-{os.getpid()}-{time.monotonic_ns()}"

    def __enter__(self) -> Containerd:
        self.work.mkdir(parents=True)
        config = self.work / "config.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{self.work / "root"}"\n'
            f'state = "{self.work / "state"}"\n'
            # Containers only: no Kubernetes interface.
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{self.socket}"\n'
            f'[ttrpc]\n  address = "{self.socket}.ttrpc"\n'
        )
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                private_mounts(["containerd", "--config", str(config)]),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd ended: {self.log.read_text()[-500:]}")
            probe = subprocess.run(self.ctr_args("version"), capture_output=True)
            if probe.returncode == 0:
                return self
            time.sleep(POLL_SECONDS)
        self.__exit__()
        raise RuntimeError(f"containerd did not answer within {READY_SECONDS} s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        try:
            listed = subprocess.run(self.ctr_args("containers", "ls", "-q"), capture_output=True)
            self.remove(listed.stdout.decode().split())
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            shutil.rmtree(self.work, ignore_errors=True)
            shutil.rmtree(SHIM_STATE_ROOT / self.namespace, ignore_errors=True)

    def ctr_args(self, *args: str) -> list[str]:
        return ["ctr", "--address", str(self.socket), "--namespace", self.namespace, *args]

    def pull(self, ref: str) -> None:
        run(self.ctr_args("images", "pull", "--plain-http", "--snapshotter", SNAPSHOTTER, ref))

    def run_args(self, ref: str, name: str) -> list[str]:
        """Start a container of ``ref`` (its image's command) on crun, detached: returns once
        its task has started."""
        return self.ctr_args(
            "run",
            "-d",
            "--snapshotter",
            SNAPSHOTTER,
            "--runc-binary",
            self.crun,
            ref,
            name,
        )

    def remove(self, names: list[str]) -> None:
        def one(name: str) -> None:
            subprocess.run(self.ctr_args("tasks", "rm", "-f", name), capture_output=True)
            subprocess.run(self.ctr_args("containers", "rm", name), capture_output=True)

        with ThreadPoolExecutor(CLEANUP_WORKERS) as pool:
            list(pool.map(one, names))


class Podman:
    """podman with its own storage under ``work`` (overlay), on crun, cgroups by cgroupfs (no
    systemd here)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.crun = host.crun_binary() or "crun"
        # podman asks crun for RLIMIT_NOFILE 1048576 and RLIMIT_NPROC at its own defaults, above
        # what this machine allows: ctr's default (nofile 1024) and nproc within the host's.
        hard_nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
        nproc = 16384 if hard_nproc == resource.RLIM_INFINITY else min(hard_nproc, 16384)
        self.limits = ["--ulimit", "nofile=1024:1024", "--ulimit", f"nproc={nproc}:{nproc}"]

    def __enter__(self) -> Podman:
        self.work.mkdir(parents=True)
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(self.args("rm", "--all", "--force", "--time", "0"), capture_output=True)
        shutil.rmtree(self.work, ignore_errors=True)

    def args(self, *args: str) -> list[str]:
        return private_mounts(
            [
                "podman",
                "--root",
                str(self.work / "root"),
                "--runroot",
                str(self.work / "run"),
                "--tmpdir",
                str(self.work / "tmp"),
                "--storage-driver",
                "overlay",
                "--cgroup-manager",
                "cgroupfs",
                "--runtime",
                self.crun,
                "--events-backend",
                "none",
                *args,
            ]
        )

    def pull(self, ref: str) -> None:
        run(self.args("pull", "--quiet", "--tls-verify=false", ref))

    def run_args(self, ref: str, name: str) -> list[str]:
        return self.args(
            "run", "-d", "--pull", "never", "--network", "none", *self.limits, "--name", name, ref
        )

    def remove(self, names: list[str]) -> None:
        if names:
            run(self.args("rm", "--force", "--time", "0", *names))


Anchor = Containerd | Podman


def anchor_start(anchor: Anchor, ref: str, name: str) -> float:
    seconds = timed(lambda: run(anchor.run_args(ref, name)))
    anchor.remove([name])
    return seconds


def anchor_burst(anchor: Anchor, ref: str, count: int, round_: int) -> float:
    """Seconds until ``count`` containers started at once all run."""
    names = [f"burst-{round_}-{i}" for i in range(count)]
    started = time.perf_counter()
    procs = [
        subprocess.Popen(anchor.run_args(ref, name), stdout=DEVNULL, stderr=PIPE) for name in names
    ]
    errors = [proc.communicate()[1] for proc in procs]  # each, until the last has returned
    seconds = time.perf_counter() - started
    failures = [err.decode() for proc, err in zip(procs, errors, strict=True) if proc.returncode]
    anchor.remove(names)
    if failures:
        raise RuntimeError(f"{len(failures)} of {count} starts failed: {failures[0][-300:]}")
    return seconds


def ours_burst(backend: LocalBackend, ref: str, count: int) -> float:
    """Seconds from the first of ``count`` creates made at once (one thread each) until the
    last group's first process runs."""
    backend.ctx.runtime.ready()
    time.sleep(0.5)  # as for one start: a supervisor is kept ready (outside the time measured)

    def create(i: int) -> str:
        spec = ContainerGroupSpec(
            name=f"burst-{i}", cache="auto", containers=[{"name": "main", "image": ref}]
        )
        return backend.create_container_group(spec).id

    requested = time.time()
    with ThreadPoolExecutor(count) as pool:
        ids = list(pool.map(create, range(count)))
    states = [backend.ctx.runtime.group(group_id) for group_id in ids]
    with ThreadPoolExecutor(CLEANUP_WORKERS) as pool:
        list(pool.map(backend.delete_container_group, ids))
    late = [s for s in states if s is None or s.first_process_at is None]
    if late:
        raise RuntimeError(f"{len(late)} of {count} groups did not start")
    return max(s.first_process_at for s in states if s and s.first_process_at) - requested


FRESH_START = """
import json, sys, time
from pathlib import Path
from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.engine.models import ContainerGroupSpec

backend = LocalBackend(data_dir=Path(sys.argv[1]))
main = {"name": "main", "image": sys.argv[2]}
spec = ContainerGroupSpec(name="fresh", cache="auto", containers=[main])
requested = time.time()
record = backend.create_container_group(spec)
state = backend.ctx.runtime.group(record.id)
backend.delete_container_group(record.id)
started = state.first_process_at if state is not None else None
print(json.dumps(None if started is None else started - requested))
"""


def fresh_start(data_dir: Path, ref: str, no_fork_server: bool = False) -> float:
    """Create-to-first-process of the first start in a new process (its imports and the
    backend's opening are before the clock runs); with ``no_fork_server``, none is running
    when that process starts."""
    if no_fork_server:
        forkserver.stop_server()
    done = run([sys.executable, "-c", FRESH_START, str(data_dir), ref])
    seconds = json.loads(done.stdout.strip().splitlines()[-1])
    if seconds is None:
        raise RuntimeError("the fresh process's group did not start")
    return seconds


def anchors(work: Path) -> tuple[dict[str, Anchor], dict[str, str]]:
    """The anchors installed here; in the full run, both are required."""
    found: dict[str, Anchor] = {}
    skipped: dict[str, str] = {}
    for name, binaries, make in (
        ("containerd", ("containerd", "ctr"), Containerd),
        ("podman", ("podman",), Podman),
    ):
        missing = [b for b in binaries if shutil.which(b) is None]
        if missing:
            if not quick():
                needed = ", ".join(missing)
                raise SystemExit(f"{needed} missing: run scripts/install-system-deps.sh")
            skipped[name] = f"skipped: {', '.join(missing)} not installed"
        else:
            found[name] = make(work / name)
    return found, skipped


def main() -> None:
    reason = host.unavailable()
    if reason:
        raise SystemExit(f"containers cannot run here: {reason}")
    scale = 10 if quick() else 100
    rounds = 3 if quick() else 5
    # Single starts take tens of milliseconds, and one in five or so is slowed by something
    # else on this shared machine: more rounds keep that out of the median.
    start_rounds = 3 if quick() else 9
    bursts = {20: 1 if quick() else 3, 100: 1 if quick() else 2}
    work = Path(tempfile.mkdtemp(prefix="eci-bench-anchors-"))
    figures: dict[str, float | str] = {"load_average_at_start": round(os.getloadavg()[0], 1)}
    found, skipped = anchors(work)
    ours: LocalBackend | None = None
    try:
        with RegistryServer(work / "registry") as server:
            builder = ImageBuilder(server.url)
            sizes = push_set(builder, scale)
            builder.close()
            ref = f"{server.host}/{IMAGE}"
            figures["image_mb"] = round(sizes[IMAGE] / MIB, 1)

            # 1. builds, interleaved: each engine into fresh storage every round
            builds: dict[str, list[float]] = {"ours": []} | {name: [] for name in found}
            for i in range(rounds):
                backend = LocalBackend(data_dir=work / f"build-{i}")
                spec = ImageCacheSpec(name="bench", images=[ref])
                builds["ours"].append(timed(lambda b=backend, s=spec: b.create_image_cache(s)))
                shutil.rmtree(work / f"build-{i}")
                for name, anchor in found.items():
                    fresh = type(anchor)(work / f"{name}-build-{i}")
                    with fresh:
                        builds[name].append(timed(lambda f=fresh: f.pull(ref)))

            # 2. one start from local layers, and 3. bursts
            ours = LocalBackend(data_dir=work / "ours")
            ours.create_image_cache(ImageCacheSpec(name="bench", images=[ref]))
            starts: dict[str, list[float]] = {"ours": []} | {name: [] for name in found}
            burst: dict[tuple[str, int], list[float]] = {}
            with contextlib.ExitStack() as running:
                for anchor in found.values():
                    running.enter_context(anchor)
                for anchor in found.values():
                    anchor.pull(ref)
                    anchor_start(anchor, ref, "warm")  # its first start (page cache, snapshot)
                start(ours, ref, "auto")
                for i in range(start_rounds):
                    starts["ours"].append(start(ours, ref, "auto"))
                    for name, anchor in found.items():
                        starts[name].append(anchor_start(anchor, ref, f"one-{i}"))
                for count, repeat in bursts.items():
                    for i in range(repeat):
                        burst.setdefault(("ours", count), []).append(ours_burst(ours, ref, count))
                        if "containerd" in found:
                            burst.setdefault(("containerd", count), []).append(
                                anchor_burst(found["containerd"], ref, count, i)
                            )

            # 4. the first start in a fresh process, against a steady one: in turns, so that
            # both see the same machine (the bursts above leave it busy for a while)
            steady: list[float] = []
            fresh: list[float] = []
            for _ in range(rounds):
                steady.append(start(ours, ref, "auto"))
                fresh.append(fresh_start(work / "ours", ref))
            cold = [fresh_start(work / "ours", ref, no_fork_server=True) for _ in range(rounds)]
    finally:
        if ours is not None:  # groups outlive this process: stop what a failure left running
            for group in ours.list_container_groups():
                ours.delete_container_group(group.id)
        shutil.rmtree(work, ignore_errors=True)

    mb = sizes[IMAGE] / MIB
    figures["build_s_ours"] = round(median(builds["ours"]), 3)
    figures["build_mb_per_s_ours"] = round(mb / median(builds["ours"]), 1)
    figures["start_ms_ours"] = round(1000 * median(starts["ours"]), 1)
    for name, label in (("containerd", "ctr_crun"), ("podman", "podman")):
        build_key = "build_vs_containerd" if name == "containerd" else "build_vs_podman"
        if name in skipped:
            figures[build_key] = figures[f"start_vs_{label}"] = skipped[name]
            continue
        figures[f"build_s_{name}"] = round(median(builds[name]), 3)
        figures[build_key] = round(median(builds[name]) / median(builds["ours"]), 2)
        figures[f"start_ms_{label}"] = round(1000 * median(starts[name]), 1)
        figures[f"start_vs_{label}"] = round(median(starts[name]) / median(starts["ours"]), 2)
    for count in bursts:
        figures[f"burst{count}_s_ours"] = round(median(burst[("ours", count)]), 3)
        if "containerd" in skipped:
            figures[f"burst{count}_vs_ctr_crun"] = skipped["containerd"]
            continue
        figures[f"burst{count}_s_ctr_crun"] = round(median(burst[("containerd", count)]), 3)
        figures[f"burst{count}_vs_ctr_crun"] = round(
            median(burst[("containerd", count)]) / median(burst[("ours", count)]), 2
        )
    figures["first_start_ms_fresh_process"] = round(1000 * median(fresh), 1)
    figures["first_start_ms_steady"] = round(1000 * median(steady), 1)
    figures["first_start_vs_steady"] = round(median(fresh) / median(steady), 2)
    figures["first_start_ms_no_fork_server"] = round(1000 * median(cold), 1)
    figures["version_ours"] = eci_imagecache.__version__
    figures["version_containerd"] = version(["containerd", "--version"])
    figures["version_podman"] = version(["podman", "--version"])
    figures["version_crun"] = version(["crun", "--version"])
    figures["load_average_at_end"] = round(os.getloadavg()[0], 1)
    report(
        "anchors",
        f"Ours vs containerd and podman, {figures['image_mb']} MB image, medians of {rounds} "
        f"(single starts: {start_rounds}; bursts: "
        f"{', '.join(f'{n} x {r}' for n, r in bursts.items())})",
        figures,
    )


if __name__ == "__main__":
    main()
