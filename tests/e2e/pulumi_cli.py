"""Run the real Pulumi CLI on a stack under examples/, with local file state."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PULUMI_VERSION = "3.274.1"  # keep in step with scripts/install-pulumi-cli.sh


def find_pulumi_bin() -> Path | None:
    """The directory holding ``pulumi``: $PULUMI_CLI_BIN, the project's build, or PATH."""
    candidates = []
    if os.environ.get("PULUMI_CLI_BIN"):
        candidates.append(Path(os.environ["PULUMI_CLI_BIN"]))
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    candidates.append(cache / "eci-imagecache" / f"pulumi-{PULUMI_VERSION}" / "bin")
    on_path = shutil.which("pulumi")
    if on_path:
        candidates.append(Path(on_path).parent)
    for directory in candidates:
        if (directory / "pulumi").is_file():
            return directory
    return None


@dataclass
class Stack:
    project_dir: Path
    work: Path  # state, Pulumi home, config and the local backend's data
    name: str = "test"
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        pulumi_bin = find_pulumi_bin()
        assert pulumi_bin is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
        venv_bin = str(Path(sys.executable).parent)
        env.update(
            PATH=os.pathsep.join([venv_bin, str(pulumi_bin), env.get("PATH", "")]),
            PULUMI_HOME=str(self.work / "pulumi-home"),
            PULUMI_BACKEND_URL=(self.work / "state").as_uri(),
            PULUMI_CONFIG_PASSPHRASE="e2e-passphrase",
            PULUMI_SKIP_UPDATE_CHECK="true",
            PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true",
            PULUMI_SKIP_CONFIRMATIONS="true",
            ECI_IMAGECACHE_HOME=str(self.work / "eci-data"),
            NO_COLOR="1",
        )
        env.update(self.extra_env)
        return env

    def command(self, *args: str) -> list[str]:
        command = ["pulumi", *args, "--non-interactive", "--color", "never"]
        if args[0] == "cancel":
            command += ["--stack", self.name]
        elif args[0] not in ("stack", "login", "version", "package"):
            command += ["--stack", self.name, "--config-file", str(self.config_file)]
        return command

    def run(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 600,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess:
        command = self.command(*args)
        result = subprocess.run(
            command,
            cwd=self.project_dir,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)} exited {result.returncode}\n"
                f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            )
        return result

    def start(self, *args: str) -> subprocess.Popen:
        """Run a command in the background, in a session of its own (so it can be killed)."""
        log = (self.work / "background.log").open("w")
        return subprocess.Popen(
            self.command(*args),
            cwd=self.project_dir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    @property
    def config_file(self) -> Path:
        return self.work / f"Pulumi.{self.name}.yaml"

    def init(
        self, config: dict[str, str] | None = None, secrets: dict[str, str] | None = None
    ) -> Stack:
        (self.work / "state").mkdir(parents=True, exist_ok=True)
        self.config_file.touch()
        self.run("stack", "init", self.name)
        for key, value in (config or {}).items():
            self.run("config", "set", key, value)
        for key, value in (secrets or {}).items():
            self.run("config", "set", "--secret", key, value)
        return self

    def backend(self):
        """The local backend this stack's resources live in."""
        from eci_imagecache.backends.local.backend import LocalBackend

        return LocalBackend(data_dir=self.work / "eci-data")

    def view(self):
        """A read-only view of that backend: what `eci-imagecache` lists through. Reading
        through it runs no recovery, so watching a deployment does not act on it."""
        from eci_imagecache.backends.local.view import LocalView

        return LocalView(data_dir=self.work / "eci-data")

    def state(self) -> dict:
        return json.loads(self.export())["deployment"]

    def outputs(self) -> dict:
        return json.loads(self.run("stack", "output", "--json", "--show-secrets").stdout)

    def export(self) -> str:
        return self.run("stack", "export").stdout


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), children first."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        for child in parents.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found
