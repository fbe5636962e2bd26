"""`make up` as on a fresh machine: no uv anywhere on PATH, an empty user site, then `make down`.

`make up` must install what it needs exactly as `make test` does (uv via `pip install
--user`, the locked workspace, the Debian packages as root) and start the stack. The run gets
a HOME and PYTHONUSERBASE of its own (so pip's `--user` install lands there), its own
virtualenv (UV_PROJECT_ENVIRONMENT: the environment pytest runs in is never re-synced), its
own state directory and free non-default ports, so it runs next to the e2e session's stack
and a developer's `make up`. uv's and pip's download caches are shared, so the install is
quick; nothing is fetched that the lockfile does not name.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from milepost_devstack.config import PORT_VARIABLES, STATE_DIR_VARIABLE, Ports
from milepost_devstack.credentials import load_or_create
from milepost_devstack.process import processes_in

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("fresh-machine")]

ROOT = Path(__file__).resolve().parents[2]
# Inherited variables that would tie the run to this machine's tools or to the running suite.
_DROPPED_PREFIXES = ("MILEPOST_", "UV_", "XDG_", "MAKE")
_DROPPED = {"UV", "VIRTUAL_ENV", "MFLAGS", "PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE"}


@dataclass(frozen=True)
class FreshMachine:
    """The environment of one fresh-machine run and the directories it owns."""

    env: dict[str, str]
    home: Path
    venv: Path
    state_dir: Path
    ports: Ports

    def make(self, target: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "-C", str(ROOT), target],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )


def path_without_uv(path: str, hidden: list[Path]) -> str:
    """`path` without the directories holding a `uv` executable, nor those in `hidden`."""
    kept = []
    for entry in path.split(os.pathsep):
        directory = Path(entry)
        if entry and directory not in hidden and not (directory / "uv").exists():
            kept.append(entry)
    return os.pathsep.join(kept)


def shared_cache(tool: str) -> Path:
    """The download cache `tool` (uv or pip) uses for this user."""
    configured = os.environ.get(f"{tool.upper()}_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / tool


def fresh_environ(home: Path, venv: Path, state_dir: Path, ports: Ports) -> dict[str, str]:
    environ = {
        key: value
        for key, value in os.environ.items()
        if key not in _DROPPED and not key.startswith(_DROPPED_PREFIXES)
    }
    suite_venv = Path(sys.prefix) / "bin"
    environ |= {
        "PATH": path_without_uv(os.environ.get("PATH", ""), [suite_venv]),
        "HOME": str(home),
        "PYTHONUSERBASE": str(home / ".local"),
        "UV_CACHE_DIR": str(shared_cache("uv")),
        "PIP_CACHE_DIR": str(shared_cache("pip")),
        "UV_PROJECT_ENVIRONMENT": str(venv),
        STATE_DIR_VARIABLE: str(state_dir),
    }
    # Where packages come from is the machine's setting, not part of the user site.
    pip_config = Path.home() / ".config" / "pip" / "pip.conf"
    if "PIP_CONFIG_FILE" not in environ and pip_config.exists():
        environ["PIP_CONFIG_FILE"] = str(pip_config)
    for field, variable in PORT_VARIABLES.items():
        environ[variable] = str(getattr(ports, field))
    return environ


def kill_leftovers(directories: list[Path]) -> list[str]:
    """SIGKILL every process still using `directories` (after a failed `down`); return them."""
    leftovers = [line for directory in directories for line in processes_in(directory)]
    for line in leftovers:
        try:
            os.kill(int(line.split(" ", 1)[0]), signal.SIGKILL)
        except ProcessLookupError:
            continue
    return leftovers


@pytest.fixture
def machine() -> Iterator[FreshMachine]:
    # Under /tmp directly: the state directory must be traversable by the `postgres` user
    # when the suite runs as root (pytest's temp root is private to root).
    home = Path(tempfile.mkdtemp(prefix="milepost-fresh-home-"))
    venv = home / "venv"
    state_dir = Path(tempfile.mkdtemp(prefix="milepost-fresh-state-"))
    ports = Ports.free()
    env = fresh_environ(home, venv, state_dir, ports)
    assert shutil.which("uv", path=env["PATH"]) is None
    assert venv != Path(sys.prefix)
    try:
        yield FreshMachine(env, home, venv, state_dir, ports)
    finally:
        leftovers = kill_leftovers([state_dir, venv])
        shutil.rmtree(state_dir, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
    assert leftovers == [], "processes of the fresh-machine stack survived `make down`"


class TestMakeUp:
    @pytest.mark.timeout(480)
    def test_fresh_machine_installs_starts_and_down_stops_everything(
        self, machine: FreshMachine
    ) -> None:
        try:
            up = machine.make("up", timeout=300)
            assert up.returncode == 0, up.stdout[-4000:]
            gateway = f"http://127.0.0.1:{machine.ports.gateway}"
            health = httpx.get(f"{gateway}/api/health", timeout=10)
            # The generated login `make up` keeps, which it must have printed.
            credentials = load_or_create(machine.state_dir / "secrets.env")
            email, password = credentials.operator_email, credentials.operator_password
            login = httpx.post(
                f"{gateway}/admin/v1/auth/token",
                data={"username": email, "password": password},
                timeout=30,
            )
        finally:
            down = machine.make("down", timeout=180)

        assert (machine.home / ".local" / "bin" / "uv").exists(), "uv was not installed with pip"
        assert (machine.venv / "bin" / "milepost-stack").exists()
        assert health.status_code == 200
        assert f"email    {email}" in up.stdout
        assert f"password {password}" in up.stdout
        assert login.status_code == 200
        assert f"Console: {gateway}/admin/" in up.stdout
        assert "Next: make demo" in up.stdout
        assert down.returncode == 0, down.stdout[-4000:]
        assert processes_in(machine.state_dir) == []
        assert processes_in(machine.venv) == []
