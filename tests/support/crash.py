"""Run one local-backend operation in a child process that SIGKILLs itself at a commit point.

The child counts the write transactions of the operation (the store's ``_commit``) and kills
itself just before or just after commit number ``point``: "before" leaves whatever files the
operation wrote since the last commit, "after" leaves the commit without the work that follows
it (file removals, the next step). ``run_to_end`` runs without a kill and tells how many commit
points the operation has.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CHILD = r"""
import json, os, signal, sys
from pathlib import Path
from eci_imagecache.backends.local.backend import LocalBackend
from eci_imagecache.backends.local.store import Store
from eci_imagecache.engine.models import ContainerGroupSpec, ImageCacheSpec

data_dir, point, when, action, args = sys.argv[1:6]
point, args = int(point), json.loads(args)
commits, counting = 0, False
original = Store._commit


def commit(db):
    global commits
    if counting:
        commits += 1
        if commits == point and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
    original(db)
    if counting and commits == point and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)


Store._commit = staticmethod(commit)
backend = LocalBackend(data_dir=Path(data_dir))
counting = True
if action == "create":
    result = backend.create_image_cache(
        ImageCacheSpec(**args["spec"]), client_token=args.get("token")
    ).id
elif action == "update":
    result = backend.update_image_cache(args["id"], ImageCacheSpec(**args["spec"])).id
elif action == "group":
    result = backend.create_container_group(
        ContainerGroupSpec(**args["spec"]), client_token=args.get("token")
    ).id
elif action == "delete":
    backend.delete_image_cache(args["id"])
    result = args["id"]
else:
    raise SystemExit(f"unknown action {action}")
print(json.dumps({"commits": commits, "result": result}), flush=True)
"""


@dataclass
class Outcome:
    killed: bool
    commits: int | None = None
    result: str | None = None


def run(data_dir: Path, action: str, args: dict, point: int = 0, when: str = "after") -> Outcome:
    """Run ``action`` with a kill at commit ``point`` (0: never)."""
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(data_dir), str(point), when, action, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if child.returncode == -signal.SIGKILL:
        return Outcome(killed=True)
    if child.returncode != 0:
        raise AssertionError(f"{action} failed in the child:\n{child.stderr[-3000:]}")
    answer = json.loads(child.stdout.strip().splitlines()[-1])
    return Outcome(killed=False, commits=answer["commits"], result=answer["result"])
