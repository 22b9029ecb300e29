"""The emulator under load: 50 and 200 concurrent Python SDK clients on loopback.

The emulator runs in a process of its own (as ``eci-imagecache emulator serve`` does), serving
a local backend whose images come from a real registry. Each client is the official Python SDK
(``alibabacloud_eci20180808``, ACS3-signed) on its own thread with its own connection pool; it
reads (DescribeImageCaches, ListUsage) and now and then creates a cache, with a ClientToken, for
a bounded time. A throttled call (400 ``Throttling.User``: the SDK raises its retryable
``ThrottlingException``) is retried after the ``x-acs-retry-after`` it was given, as a client
following the SDK's advice does; anything else (a refused connection, a reset, a 5xx) counts
as an error and the call is given up.

Figures per level: calls answered per second, p50 / p99 of a call (its retries included),
answers by code, clients that completed nothing (starved), creates never answered.
``BENCH_QUICK=1`` runs each level 4 s instead of 15 s.
"""

from __future__ import annotations

import collections
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import p, quick, report

ACCESS_KEY = ("LTAI-load-bench", "load-bench-secret")
REGION = "cn-hangzhou"
LEVELS = (50, 200)
CREATE_EVERY = 5  # one call in five is a create
CREATE_DEADLINE = 120.0  # seconds a create may take (retries included) before it is unanswered
MAX_CALLS = 500  # per client: the run is bounded in count as well as in time


def serve(data_dir: str, endpoint_file: str) -> None:
    """The emulator process: a local backend with room for every cache the run makes."""
    from eci_imagecache.backends.emulator.server import EmulatorServer
    from eci_imagecache.backends.local.backend import LocalBackend
    from eci_imagecache.engine.models import Quota

    backend = LocalBackend(
        data_dir=Path(data_dir), region=REGION, quota=Quota(max_manual=100_000, max_auto=100)
    )
    server = EmulatorServer(backend, dict([ACCESS_KEY]))
    Path(endpoint_file).write_text(server.endpoint)
    server.serve_forever()


def sdk_client(endpoint: str) -> Any:
    from alibabacloud_credentials.client import Client as CredentialClient
    from alibabacloud_credentials.models import Config as CredentialConfig
    from alibabacloud_eci20180808.client import Client
    from alibabacloud_tea_openapi import models as openapi

    credential = CredentialClient(
        CredentialConfig(
            type="access_key", access_key_id=ACCESS_KEY[0], access_key_secret=ACCESS_KEY[1]
        )
    )
    config = openapi.Config(
        credential=credential,
        endpoint=endpoint.removeprefix("http://"),
        protocol="http",
        region_id=REGION,
        read_timeout=60_000,
        connect_timeout=30_000,
    )
    return Client(config)


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.codes: collections.Counter[str] = collections.Counter()
        self.latencies: list[float] = []
        self.answered = 0
        self.creates_sent = 0
        self.creates_answered = 0

    def count(self, code: str) -> None:
        with self.lock:
            self.codes[code] += 1


def one_call(call: Callable[[], object], tally: Tally, deadline: float) -> bool:
    """A call, retried while throttled (after the wait the server named) until ``deadline``."""
    from alibabacloud_tea_openapi.exceptions import ThrottlingException
    from darabonba.exceptions import DaraException

    start = time.perf_counter()
    while True:
        try:
            call()
        except ThrottlingException as err:
            tally.count(err.code or "Throttling")
            if time.monotonic() > deadline:
                return False
            time.sleep((err.retry_after or 100) / 1000)
            continue
        except DaraException as err:
            tally.count(str(getattr(err, "code", "") or type(err).__name__))
            return False
        except Exception as err:  # a transport failure: what the issue saw (RemoteDisconnected)
            tally.count(type(err).__name__)
            return False
        tally.count("200")
        with tally.lock:
            tally.latencies.append(time.perf_counter() - start)
            tally.answered += 1
        return True


def client_loop(
    client: Any,
    image: str,
    n: int,
    start: threading.Event,
    until: list[float],
    tally: Tally,
    done: list[int],
) -> None:
    from alibabacloud_eci20180808 import models as sdk

    completed, i = 0, 0
    start.wait()
    while time.monotonic() < until[0] and i < MAX_CALLS:
        i += 1
        if i % CREATE_EVERY == 0:
            token = f"load-{n}-{i}-{secrets.token_hex(4)}"
            request = sdk.CreateImageCacheRequest(
                region_id=REGION, image_cache_name=token, image=[image], client_token=token
            )
            with tally.lock:
                tally.creates_sent += 1
            if one_call(
                lambda r=request: client.create_image_cache(r),
                tally,
                time.monotonic() + CREATE_DEADLINE,
            ):
                with tally.lock:
                    tally.creates_answered += 1
                completed += 1
        elif i % 2:
            request = sdk.DescribeImageCachesRequest(region_id=REGION, limit=20)
            completed += one_call(
                lambda r=request: client.describe_image_caches(r), tally, until[0]
            )
        else:
            request = sdk.ListUsageRequest(region_id=REGION)
            completed += one_call(lambda r=request: client.list_usage(r), tally, until[0])
    done.append(completed)


def level(endpoint: str, image: str, clients: int, seconds: float) -> dict[str, float]:
    tally, done, go, until = Tally(), [], threading.Event(), [0.0]
    # Clients are made before the clock starts (making one costs more than a call); then all
    # start at once: a burst of new connections.
    threads = [
        threading.Thread(
            target=client_loop, args=(sdk_client(endpoint), image, n, go, until, tally, done)
        )
        for n in range(clients)
    ]
    for t in threads:
        t.start()
    start = time.monotonic()
    until[0] = start + seconds
    go.set()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    figures: dict[str, float] = {
        f"calls_per_s_{clients}": round(tally.answered / elapsed, 1),
        f"call_p50_ms_{clients}": round(p(tally.latencies, 0.5) * 1000, 1),
        f"call_p99_ms_{clients}": round(p(tally.latencies, 0.99) * 1000, 1),
        f"clients_starved_{clients}": sum(1 for c in done if c == 0),
        f"creates_sent_{clients}": tally.creates_sent,
        f"creates_unanswered_{clients}": tally.creates_sent - tally.creates_answered,
    }
    for code, count in sorted(tally.codes.items()):
        figures[f"answers_{code}_{clients}"] = count
    return figures


def main() -> None:
    from eci_imagecache.testing.registry import ImageBuilder, RegistryServer, push_samples

    seconds = 4.0 if quick() else 15.0
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, RegistryServer(Path(tmp) / "registry") as registry:
        builder = ImageBuilder(registry.url)
        push_samples(builder)
        builder.close()
        image = f"{registry.host}/demo/web:1.0"
        endpoint_file = Path(tmp) / "endpoint"
        serve_args = [f"{tmp}/data", str(endpoint_file)]
        server = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_emulator_load", "serve", *serve_args]
        )
        try:
            deadline = time.monotonic() + 60
            while not endpoint_file.exists() or not endpoint_file.read_text():
                assert server.poll() is None and time.monotonic() < deadline, "no emulator"
                time.sleep(0.05)
            endpoint = endpoint_file.read_text()
            for clients in LEVELS:
                figures.update(level(endpoint, image, clients, seconds))
        finally:
            server.terminate()
            server.wait(30)
    report("emulator_load", "The emulator under concurrent SDK clients", figures)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2], sys.argv[3])
    else:
        main()
