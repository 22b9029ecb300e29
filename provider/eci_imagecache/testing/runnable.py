"""Runnable demo images, built from Debian's ``busybox-static`` (a static binary, no libraries).

- ``demo/httpd:1.0``: serves ``/www`` with ``busybox httpd`` on ``$PORT`` (8080 unless set),
  stopping cleanly on SIGTERM;
- ``demo/job-ok:1.0``: prints a line and exits 0;
- ``demo/job-fail:1.0``: prints a line and exits ``$EXIT_CODE`` (1 unless set).

All three share one base layer (busybox and its applet links); each adds a small layer of its own.
The sample images (``registry.push_samples``) carry the same files in their base layer and run
:func:`idle_config`'s command.
"""

from __future__ import annotations

import gzip
import io
import shutil
import struct
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ..registry.client import sha256_digest
from .registry import Blob, ImageBuilder, PushedImage

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "echo", "cat", "ls", "sleep", "httpd", "env", "wc", "kill", "true", "false")
HTTPD_PORT = 8080
PT_INTERP = 3
INDEX_HTML = (
    "<html><body><h1>eci-imagecache demo</h1><p>served by busybox httpd</p></body></html>\n"
)


class BusyboxMissing(FileNotFoundError):
    pass


def busybox_binary() -> Path:
    path = Path(shutil.which("busybox") or BUSYBOX)
    if not path.is_file() or not _static_elf(path):
        raise BusyboxMissing(
            "a static busybox is not installed (scripts/install-system-deps.sh installs "
            "busybox-static)"
        )
    return path


def _static_elf(path: Path) -> bool:
    """A 64-bit little-endian ELF with no program interpreter (PT_INTERP) segment."""
    with open(path, "rb") as elf:
        head = elf.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            return False
        (phoff,) = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        elf.seek(phoff)
        table = elf.read(phentsize * phnum)
    return all(struct.unpack_from("<I", table, n * phentsize)[0] != PT_INTERP for n in range(phnum))


def _tar_layer(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> tuple[Blob, str]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    tar_bytes = raw.getvalue()
    gz = gzip.compress(tar_bytes, compresslevel=6, mtime=0)
    return Blob(sha256_digest(gz), gz, "application/vnd.oci.image.layer.v1.tar+gzip"), (
        sha256_digest(tar_bytes)
    )


def _dir(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info, None


def _file(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def _link(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
    return info, None


def busybox_base_layer() -> tuple[Blob, str]:
    """``/bin/busybox``, its applet links, a minimal ``/etc`` and ``/tmp``."""
    return _tar_layer(busybox_files())


def busybox_files() -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """The entries of a layer with ``/bin/busybox``, its applet links, a minimal ``/etc`` and
    ``/tmp`` (BusyboxMissing without a static busybox)."""
    binary = busybox_binary().read_bytes()
    entries = [
        _dir("bin"),
        _file("bin/busybox", binary, 0o755),
        *(_link(f"bin/{applet}", "busybox") for applet in APPLETS),
        _dir("etc"),
        _file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n"),
        _file("etc/group", b"root:x:0:\nnogroup:x:65534:\n"),
        _dir("tmp"),
        _dir("root"),
    ]
    entries[-2][0].mode = 0o1777
    return entries


IDLE_SCRIPT = """trap 'kill $! 2>/dev/null; exit 0' TERM INT
echo "$IMAGE running"
while :; do sleep 3600 & wait $!; done
"""


def idle_config(image: str) -> dict:
    """The run config of a sample image: say it runs, then wait until stopped (SIGTERM)."""
    return {"Cmd": ["/bin/sh", "-c", IDLE_SCRIPT], "Env": ["PATH=/bin", f"IMAGE={image}"]}


HTTPD_SCRIPT = b"""#!/bin/sh
# busybox httpd in the foreground; exit at once on SIGTERM (PID 1 gets no default handler).
trap 'kill $child 2>/dev/null; exit 0' TERM INT
httpd -f -p "${PORT:-8080}" -h /www &
child=$!
echo "httpd listening on port ${PORT:-8080}"
wait $child
"""


def push_image(
    builder: ImageBuilder,
    repository: str,
    tag: str,
    layers: list[tuple[Blob, str]],
    config: dict,
) -> PushedImage:
    """A runnable image: ``config`` holds its Cmd, Env, WorkingDir and ports."""
    return builder.push_image(repository, tag, layers, config=config)


@dataclass
class RunnableImages:
    httpd: PushedImage
    job_ok: PushedImage
    job_fail: PushedImage

    def references(self, host: str) -> dict[str, str]:
        return {
            "httpd": self.httpd.reference(host),
            "job_ok": self.job_ok.reference(host),
            "job_fail": self.job_fail.reference(host),
        }


def push_runnable(builder: ImageBuilder) -> RunnableImages:
    base = busybox_base_layer()
    env = ["PATH=/bin"]
    httpd = push_image(
        builder,
        "demo/httpd",
        "1.0",
        [
            base,
            _tar_layer(
                [
                    _dir("www"),
                    _file("www/index.html", INDEX_HTML.encode()),
                    _file("bin/serve", HTTPD_SCRIPT, 0o755),
                ]
            ),
        ],
        {
            "Entrypoint": ["/bin/serve"],
            "Env": [*env, f"PORT={HTTPD_PORT}"],
            "ExposedPorts": {f"{HTTPD_PORT}/tcp": {}},
            "WorkingDir": "/www",
        },
    )
    job = _tar_layer([_file("bin/job", b'#!/bin/sh\necho "job ran: ${MESSAGE:-ok}"\n', 0o755)])
    job_ok = push_image(
        builder, "demo/job-ok", "1.0", [base, job], {"Cmd": ["/bin/job"], "Env": env}
    )
    fail = _tar_layer(
        [_file("bin/fail", b'#!/bin/sh\necho "job failing"\nexit "${EXIT_CODE:-1}"\n', 0o755)]
    )
    job_fail = push_image(
        builder, "demo/job-fail", "1.0", [base, fail], {"Cmd": ["/bin/fail"], "Env": env}
    )
    return RunnableImages(httpd, job_ok, job_fail)
