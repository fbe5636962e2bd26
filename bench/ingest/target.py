"""The ingest benchmark's target: its own small stack (scratch database, Redis, the ingest
app, Traefik) or a running one, and the organization, key and devices seeded there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from bench.ingest.fleet import VEHICLES
from bench.support import (
    scratch_database,
    stop,
    wait_ready,
)
from milepost_common.db import create_database, unit_of_work
from milepost_common.domain.api_keys import service as api_key_service
from milepost_common.domain.api_keys.models import Scope
from milepost_common.domain.devices.models import Device
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.principals import SYSTEM
from milepost_common.settings import DbSettings
from milepost_common.testing import services
from milepost_devstack.net import free_ports

PARTITION_DAYS = 30


def log(message: str) -> None:
    print(f"bench-ingest: {message}", file=sys.stderr, flush=True)


@dataclass
class Target:
    mode: str
    base_url: str
    database_url: str  # libpq form
    notes: list[str] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)  # processes whose CPU is reported


def machine_busy() -> float:
    """CPU seconds all cores spent busy so far (Linux /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK")


def own_stack(stack: ExitStack, work: Path) -> Target:
    """Scratch database, Redis, the ingest app and Traefik, all torn down afterwards."""
    database_url = scratch_database(stack, "ingest", partition_days_back=PARTITION_DAYS)
    redis_url = stack.enter_context(services.provide_redis())
    app_port, gateway_port, metrics_port = free_ports(3)
    env = {
        **os.environ,
        "MILEPOST_ENV": "local",
        "MILEPOST_DB__URL": database_url,
        "MILEPOST_DB__POOL_SIZE": "10",
        "MILEPOST_REDIS__URL": redis_url,
        "MILEPOST_INGEST__HOST": "127.0.0.1",
        "MILEPOST_INGEST__PORT": str(app_port),
        # The edge limit is per client IP: every wrk connection comes from 127.0.0.1.
        "MILEPOST_GATEWAY_RATE_AVERAGE": "100000",
        "MILEPOST_GATEWAY_RATE_BURST": "100000",
    }
    ingest_log = (work / "ingest.log").open("wb")
    stack.callback(ingest_log.close)
    app = subprocess.Popen(
        [shutil.which("milepost-ingest") or "milepost-ingest"],
        env=env,
        stdout=ingest_log,
        stderr=subprocess.STDOUT,
    )
    stack.callback(stop, app)
    wait_ready(f"http://127.0.0.1:{app_port}/ingest/ready")
    from milepost_devstack import traefik

    static = traefik.render_static_config(work / "traefik.yml", gateway_port, metrics_port)
    spec = traefik.process_spec(static, traefik.Upstreams.on_loopback(1, 1, app_port), env, work)
    gateway_log = (work / "traefik.log").open("wb")
    stack.callback(gateway_log.close)
    gateway = subprocess.Popen(
        list(spec.argv),
        env=dict(spec.env),
        cwd=spec.cwd,
        stdout=gateway_log,
        stderr=subprocess.STDOUT,
    )
    stack.callback(stop, gateway)
    base_url = f"http://127.0.0.1:{gateway_port}"
    wait_ready(f"{base_url}/ingest/ready")
    return Target(
        "own stack (ingest app + Traefik, no worker)",
        base_url,
        database_url,
        pids={"ingest app": app.pid, "Traefik": gateway.pid},
    )


def running_stack() -> Target:
    from milepost_devstack.config import StackConfig
    from milepost_devstack.stack import Stack

    stack = Stack(StackConfig.from_environ())
    # Before the credentials: reading them creates the state directory when there is none.
    wait_ready(f"{stack.gateway_url}/ingest/ready", timeout=5)
    if not stack.config.secrets_file.exists():
        raise SystemExit(f"bench-ingest: no {stack.config.secrets_file}: is `make up` running?")
    target = Target(
        "the running local stack (milepost-stack up)",
        stack.gateway_url,
        stack.database_url(stack.credentials()),
    )
    target.notes.append(
        "The stack's worker processes the pushed batches while the benchmark runs and competes "
        "for the same cores."
    )
    return target


@dataclass
class Seed:
    org_id: uuid.UUID
    key: str
    devices: list[tuple[str, uuid.UUID]]


async def seed(database_url: str) -> Seed:
    db = create_database(DbSettings(url=database_url))
    try:
        async with unit_of_work(db) as session:
            org = Organization(
                name=f"bench-ingest {uuid.uuid4().hex[:6]}", ingest_rate_limit="100000000/minute"
            )
            session.add(org)
            await session.flush()
            devices = [
                Device(org_id=org.id, unique_id=f"bench-{uuid.uuid4().hex}", name=f"v{i}")
                for i in range(VEHICLES)
            ]
            session.add_all(devices)
            issued = await api_key_service.issue_api_key(
                session, SYSTEM, org.id, "bench", scopes=[Scope.INGEST]
            )
    finally:
        await db.dispose()
    return Seed(org.id, issued.secret, [(d.unique_id, d.id) for d in devices])
