"""The local stack's settings: where its state lives and which loopback ports it uses.

Read from the environment only, with the same variables the apps read, so one exported
`MILEPOST_API__PORT=9001` moves both the server and the gateway route to it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from milepost_devstack.errors import ConfigError
from milepost_devstack.net import free_ports

STATE_DIR_VARIABLE = "MILEPOST_STATE_DIR"
ENVIRONMENT_VARIABLE = "MILEPOST_ENV"


@dataclass(frozen=True)
class Ports:
    """Every loopback port of the stack; field metadata names the overriding variable."""

    gateway: int = 8080
    gateway_metrics: int = 8090
    api: int = 8001
    admin: int = 8002
    ingest: int = 8003
    worker_metrics: int = 9101
    postgres: int = 5432
    redis: int = 6379
    worker_webhooks_metrics: int = 9102

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], *, distinct: bool = True) -> Ports:
        """Defaults overridden by PORT_VARIABLES. Raises ConfigError naming a bad variable
        (or, with `distinct`, two variables of the same port)."""
        values = {}
        for field in fields(cls):
            variable = PORT_VARIABLES[field.name]
            raw = environ.get(variable)
            if raw is not None and raw.strip():
                values[field.name] = _parse_port(variable, raw)
        ports = cls(**values)
        if distinct:
            ports.check_distinct()
        return ports

    @classmethod
    def free(cls) -> Ports:
        """Distinct loopback ports that were free a moment ago (tests)."""
        return cls(*free_ports(len(fields(cls))))

    def check_distinct(self) -> None:
        by_port: dict[int, str] = {}
        for field in fields(self):
            port = getattr(self, field.name)
            if port in by_port:
                raise ConfigError(
                    f"{PORT_VARIABLES[field.name]} and {PORT_VARIABLES[by_port[port]]} "
                    f"are both {port}"
                )
            by_port[port] = field.name


PORT_VARIABLES = {
    "gateway": "MILEPOST_GATEWAY_PORT",
    "gateway_metrics": "MILEPOST_GATEWAY_METRICS_PORT",
    "api": "MILEPOST_API__PORT",
    "admin": "MILEPOST_ADMIN__PORT",
    "ingest": "MILEPOST_INGEST__PORT",
    "worker_metrics": "MILEPOST_WORKER__METRICS_PORT",
    "postgres": "MILEPOST_POSTGRES_PORT",
    "redis": "MILEPOST_REDIS_PORT",
    "worker_webhooks_metrics": "MILEPOST_WORKER_WEBHOOKS_METRICS_PORT",
}


def _parse_port(variable: str, raw: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise ConfigError(f"{variable} must be a TCP port (1-65535), got {raw!r}")
    return port


def default_state_dir(environ: Mapping[str, str]) -> Path:
    """MILEPOST_STATE_DIR, else /var/lib/milepost for root, else ~/.local/state/milepost.

    Never inside the checkout: a clone under /root is unreadable to the postgres user, and
    secrets do not belong in a working tree.
    """
    configured = environ.get(STATE_DIR_VARIABLE, "").strip()
    if configured:
        return Path(configured).expanduser().resolve()
    if os.geteuid() == 0:
        return Path("/var/lib/milepost")
    xdg_state = environ.get("XDG_STATE_HOME", "").strip()
    base = Path(xdg_state) if xdg_state else Path.home() / ".local" / "state"
    return base / "milepost"


@dataclass(frozen=True)
class StackConfig:
    """Settings of one local stack; the state directory holds everything it writes."""

    state_dir: Path
    ports: Ports
    environment: str = "local"
    # False: Postgres without fsync and Redis without AOF. Much faster to migrate and to
    # stop, for throw-away stacks (the e2e tests) whose data may be lost on a crash.
    durable: bool = True

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None, *, distinct_ports: bool = True
    ) -> StackConfig:
        """The stack `make up` runs. Raises ConfigError naming a bad variable. Commands that
        bind no port pass `distinct_ports=False`: two equal ports must not stop `down`."""
        environ = os.environ if environ is None else environ
        # Passed on to every app, which validates it like any other setting.
        environment = environ.get(ENVIRONMENT_VARIABLE, "").strip() or "local"
        ports = Ports.from_environ(environ, distinct=distinct_ports)
        return cls(default_state_dir(environ), ports, environment)

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def secrets_file(self) -> Path:
        return self.state_dir / "secrets.env"
