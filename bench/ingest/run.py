"""Ingest benchmark: batches of realistic fixes pushed by concurrent clients through the gateway,
against the same number of rows written straight into ``positions`` with asyncpg — with the
app's own dedupe statement (the unavoidable database work), with plain COPY (the floor), and
with COPY into a staging table followed by the same conflict-skipping insert (the write-path
alternative the app was measured against).

    uv run python -m bench.ingest [--clients 4] [--duration 10] [--rounds 2]
    uv run python -m bench.ingest --stack            # the running `make up` stack
    uv run python -m bench.ingest --base-url http://127.0.0.1:8080 --database-url postgres://…

Without ``--stack`` or ``--base-url`` the script runs its own small stack: a scratch database
on the server of MILEPOST_BENCH_DATABASE_URL or MILEPOST_TEST_DATABASE_URL (a role that may
create databases; else a throwaway local server), a throwaway Redis, the ingest app
(``milepost-ingest``, one uvicorn process) and Traefik on the committed gateway
configuration. Nothing else runs there (no worker competing for the two cores). The load
client is Debian's ``wrk`` with ``push.lua``; each batch is sent once. Phases alternate over
the rounds and the best round of each is reported. The bench organization's ingest rate
limit and the edge rate limit are raised for the run. Results are printed and written to
bench/ingest/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect

from bench.support import (
    cpu_seconds,
    libpq,
    peak_rss_kib,
    scratch_database,
    stop,
    wait_ready,
    write_figures,
)
from milepost_common.db import create_database, unit_of_work
from milepost_common.domain.api_keys import service as api_key_service
from milepost_common.domain.api_keys.models import Scope
from milepost_common.domain.devices.models import Device
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.positions.repository import INSERT_NEW_POSITIONS, NewPositions
from milepost_common.domain.principals import SYSTEM
from milepost_common.settings import DbSettings
from milepost_common.testing import services
from milepost_devstack.net import free_ports

HERE = Path(__file__).resolve().parent
LUA = HERE / "push.lua"
PARTITION_DAYS = 30
VEHICLES = 200
VEHICLES_PER_BATCH = 20  # one gateway's fleet; 50 fixes each per batch, 5 s apart
R = 6_371_008.8
COLUMNS = [
    "device_id",
    "fix_time",
    "org_id",
    "lat",
    "lon",
    "speed",
    "course",
    "altitude",
    "accuracy",
    "attributes",
    "batch_id",
]


def log(message: str) -> None:
    print(f"bench-ingest: {message}", file=sys.stderr, flush=True)


# --- realistic fixes -----------------------------------------------------------------------


@dataclass
class Vehicle:
    unique_id: str
    device_id: uuid.UUID
    lat: float
    lon: float
    heading: float
    speed_kmh: float
    odometer: float
    battery: float


@dataclass
class Batch:
    """One push: its JSON body (gateway) or its rows as columns (direct writes)."""

    size: int
    body: bytes = b""
    columns: dict[str, list[Any]] = field(default_factory=dict)


class Fleet:
    """Vehicles driving and parking around Berlin, a fix every 5 s each."""

    def __init__(self, devices: list[tuple[str, uuid.UUID]], seed: int = 7) -> None:
        self.rnd = random.Random(seed)
        self.vehicles = [
            Vehicle(
                u,
                d,
                52.35 + self.rnd.random() * 0.3,
                13.2 + self.rnd.random() * 0.4,
                self.rnd.uniform(0, 2 * math.pi),
                0.0,
                self.rnd.uniform(1e4, 2e5),
                self.rnd.uniform(30, 100),
            )
            for u, d in devices
        ]

    def _step(self, v: Vehicle, seconds: float) -> None:
        rnd = self.rnd
        if rnd.random() < 0.02:
            v.speed_kmh = 0.0 if v.speed_kmh else rnd.uniform(20, 110)
        if v.speed_kmh:
            v.heading += rnd.gauss(0, 0.08)
            meters = v.speed_kmh / 3.6 * seconds
            v.lat += meters * math.cos(v.heading) / R * 180 / math.pi
            v.lon += (
                meters * math.sin(v.heading) / (R * math.cos(math.radians(v.lat))) * 180 / math.pi
            )
            v.odometer += meters
        v.battery = max(5.0, v.battery - rnd.random() * 0.02)

    def batches(self, count: int, start: datetime, size: int, *, body: bool) -> list[Batch]:
        """``count`` batches of ``size`` fixes, times from ``start`` on, all distinct: as
        JSON bodies (``body``) or as columns."""
        per_vehicle = size // VEHICLES_PER_BATCH
        out: list[Batch] = []
        group = 0
        moment = start
        for _ in range(count):
            vehicles = self.vehicles[group * VEHICLES_PER_BATCH : (group + 1) * VEHICLES_PER_BATCH]
            items: list[dict[str, Any]] = []
            cols: dict[str, list[Any]] = {
                k: []
                for k in (
                    "device_ids",
                    "fix_times",
                    "lats",
                    "lons",
                    "speeds",
                    "courses",
                    "altitudes",
                    "accuracies",
                    "attributes",
                )
            }
            for v in vehicles:
                for n in range(per_vehicle):
                    self._step(v, 5.0)
                    fix_time = moment + timedelta(
                        seconds=5 * n, milliseconds=self.rnd.randrange(1000)
                    )
                    speed = (
                        round(max(0.0, v.speed_kmh + self.rnd.gauss(0, 2)), 1)
                        if v.speed_kmh
                        else 0.0
                    )
                    attributes = {
                        "ignition": bool(v.speed_kmh) or self.rnd.random() < 0.1,
                        "battery": round(v.battery, 1),
                        "odometer": round(v.odometer),
                    }
                    item = {
                        "device_id": v.unique_id,
                        "fix_time": fix_time.isoformat().replace("+00:00", "Z"),
                        "lat": round(v.lat, 6),
                        "lon": round(v.lon, 6),
                        "speed": speed,
                        "course": round(math.degrees(v.heading) % 360, 1),
                        "altitude": round(34 + self.rnd.gauss(0, 3), 1),
                        "accuracy": round(self.rnd.uniform(3, 12), 1),
                        "attributes": attributes,
                    }
                    items.append(item)
                    cols["device_ids"].append(v.device_id)
                    cols["fix_times"].append(fix_time)
                    for name, key in (
                        ("lats", "lat"),
                        ("lons", "lon"),
                        ("speeds", "speed"),
                        ("courses", "course"),
                        ("altitudes", "altitude"),
                        ("accuracies", "accuracy"),
                    ):
                        cols[name].append(item[key])
                    cols["attributes"].append(orjson.dumps(attributes).decode())
            if body:
                out.append(Batch(len(items), body=orjson.dumps({"positions": items})))
            else:
                out.append(Batch(len(items), columns=cols))
            group += 1
            if (group + 1) * VEHICLES_PER_BATCH > len(self.vehicles):
                group = 0
                moment += timedelta(seconds=5 * per_vehicle)
        return out


class TimeSlots:
    """Disjoint stretches of time inside the partitions, one per phase: no phase's rows
    collide with another's, so every write stores new rows."""

    def __init__(self, days: int) -> None:
        now = datetime.now(UTC).replace(microsecond=0)
        self.next = now - timedelta(days=days - 1)
        self.end = now - timedelta(hours=1)

    def take(self, batches: int, size: int) -> datetime:
        start = self.next
        rounds = math.ceil(batches * VEHICLES_PER_BATCH / VEHICLES)
        self.next = start + timedelta(seconds=5 * (size // VEHICLES_PER_BATCH) * rounds + 60)
        if self.next > self.end:
            raise SystemExit("bench-ingest: out of partition days; lower --duration or --batch")
        return start


# --- the target: a stack to push to, and its database ----------------------------------------


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


# --- seeding ---------------------------------------------------------------------------------


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


# --- phases ----------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    name: str
    fixes: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    p50_ms: float | None = None
    p99_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.fixes / self.seconds

    def percentiles(self) -> tuple[float, float]:
        if self.p50_ms is not None and self.p99_ms is not None:
            return self.p50_ms, self.p99_ms
        ordered = sorted(self.latencies_ms)

        def pick(q: float) -> float:
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

        return pick(0.50), pick(0.99)


def _dedupe_sql() -> tuple[str, list[str]]:
    """The app's statement as asyncpg runs it: SQL with $n and the parameters' order."""
    compiled = INSERT_NEW_POSITIONS.compile(dialect=asyncpg_dialect.dialect())  # type: ignore[no-untyped-call]
    return str(compiled), list(compiled.positiontup or [])


async def _direct(
    name: str,
    database_url: str,
    batches: list[Batch],
    clients: int,
    write: Callable[[asyncpg.Connection, Batch], Awaitable[None]],
    init: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> PhaseResult:
    pool = await asyncpg.create_pool(database_url, min_size=clients, max_size=clients, init=init)
    queue = list(reversed(batches))
    latencies: list[float] = []

    async def client() -> None:
        async with pool.acquire() as conn:
            while queue:
                batch = queue.pop()
                started = time.perf_counter()
                async with conn.transaction():
                    await write(conn, batch)
                latencies.append((time.perf_counter() - started) * 1000)

    try:
        busy, own = machine_busy(), time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        seconds = time.perf_counter() - started
        # "writer": this process, i.e. what the client side of the statement costs.
        cpu = {"whole machine": machine_busy() - busy, "writer": time.process_time() - own}
    finally:
        await pool.close()
    fixes = sum(b.size for b in batches)
    return PhaseResult(name, fixes, seconds, latencies, extra={"cpu": cpu})


def _rows_json(batch: Batch) -> str:
    """The batch as the app's statement takes it (serialized here, as the app does)."""
    c = batch.columns
    rows = zip(c["device_ids"], c["fix_times"], c["lats"], c["lons"], c["speeds"],
               c["courses"], c["altitudes"], c["accuracies"],
               [orjson.Fragment(a) for a in c["attributes"]], strict=True)  # fmt: skip
    return NewPositions(list(rows)).to_json()


async def direct_dedupe(
    target: Target, seed_: Seed, batches: list[Batch], clients: int
) -> PhaseResult:
    sql, order = _dedupe_sql()

    async def write(conn: asyncpg.Connection, batch: Batch) -> None:
        values = {"org_id": seed_.org_id, "batch_id": uuid.uuid4(), "rows": _rows_json(batch)}
        await conn.fetchrow(sql, *(values[name] for name in order))

    return await _direct(
        "direct asyncpg, the app's dedupe statement", target.database_url, batches, clients, write
    )


# The alternative dedupe statement: the same insert from nine typed arrays.
UNNEST = """
WITH inserted AS (
    INSERT INTO positions (device_id, fix_time, org_id, lat, lon, speed, course, altitude,
                           accuracy, attributes, batch_id)
    SELECT f.device_id, f.fix_time, $1, f.lat, f.lon, f.speed, f.course, f.altitude,
           f.accuracy, f.attributes::jsonb, $2
    FROM unnest($3::uuid[], $4::timestamptz[], $5::float8[], $6::float8[], $7::float8[],
                $8::float8[], $9::float8[], $10::float8[], $11::text[])
         AS f(device_id, fix_time, lat, lon, speed, course, altitude, accuracy, attributes)
    ON CONFLICT DO NOTHING
    RETURNING device_id
)
SELECT count(*), coalesce(array_agg(DISTINCT device_id), '{}') FROM inserted
"""
_ARRAYS = ["device_ids", "fix_times", "lats", "lons", "speeds", "courses", "altitudes",
           "accuracies", "attributes"]  # fmt: skip


async def direct_unnest(
    target: Target, seed_: Seed, batches: list[Batch], clients: int
) -> PhaseResult:
    async def write(conn: asyncpg.Connection, batch: Batch) -> None:
        arrays = [batch.columns[name] for name in _ARRAYS]
        await conn.fetchrow(UNNEST, seed_.org_id, uuid.uuid4(), *arrays)

    return await _direct(
        "direct asyncpg, unnest of 9 typed arrays", target.database_url, batches, clients, write
    )


def _records(org_id: uuid.UUID, batch: Batch) -> list[tuple[Any, ...]]:
    c = batch.columns
    batch_id = uuid.uuid4()
    return list(
        zip(
            c["device_ids"],
            c["fix_times"],
            [org_id] * batch.size,
            c["lats"],
            c["lons"],
            c["speeds"],
            c["courses"],
            c["altitudes"],
            c["accuracies"],
            c["attributes"],
            [batch_id] * batch.size,
            strict=True,
        )
    )


async def _jsonb_as_text(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        format="binary",
        encoder=lambda s: b"\x01" + s.encode(),
        decoder=lambda b: b[1:].decode(),
    )


async def direct_copy(
    target: Target, seed_: Seed, batches: list[Batch], clients: int
) -> PhaseResult:
    async def write(conn: asyncpg.Connection, batch: Batch) -> None:
        await conn.copy_records_to_table(
            "positions", records=_records(seed_.org_id, batch), columns=COLUMNS
        )

    return await _direct(
        "plain COPY (no dedupe; the floor)",
        target.database_url,
        batches,
        clients,
        write,
        _jsonb_as_text,
    )


STAGING = """CREATE TEMP TABLE IF NOT EXISTS positions_staging
    (LIKE positions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"""
_COLUMN_LIST = ", ".join(COLUMNS)
FROM_STAGING = f"""INSERT INTO positions ({_COLUMN_LIST})
    SELECT {_COLUMN_LIST} FROM positions_staging ON CONFLICT DO NOTHING"""  # noqa: S608


async def staging_copy(
    target: Target, seed_: Seed, batches: list[Batch], clients: int
) -> PhaseResult:
    async def write(conn: asyncpg.Connection, batch: Batch) -> None:
        await conn.execute(STAGING)
        await conn.copy_records_to_table(
            "positions_staging", records=_records(seed_.org_id, batch), columns=COLUMNS
        )
        await conn.execute(FROM_STAGING)

    return await _direct(
        "COPY into staging + INSERT … ON CONFLICT DO NOTHING",
        target.database_url,
        batches,
        clients,
        write,
        _jsonb_as_text,
    )


def gateway(
    target: Target,
    seed_: Seed,
    batches: list[Batch],
    clients: int,
    duration: int,
    work: Path,
    *,
    warm_up: bool = False,
) -> PhaseResult:
    """wrk with `clients` connections over 2 threads; each batch is sent at most once."""
    threads = min(2, clients)
    per_thread = len(batches) // threads
    phase_dir = Path(tempfile.mkdtemp(prefix="phase-", dir=work))
    for index, batch in enumerate(batches[: per_thread * threads]):
        (phase_dir / f"{index % threads}-{index // threads}.json").write_bytes(batch.body)
    env = {
        **os.environ,
        "BENCH_DIR": str(phase_dir),
        "BENCH_KEY": seed_.key,
        "BENCH_FILES": str(per_thread),
    }
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{clients}",
        f"-d{duration}s",
        "--timeout",
        "30s",
        "--latency",
        "-s",
        str(LUA),
        target.base_url,
    ]
    before = {name: cpu_seconds(pid) for name, pid in target.pids.items()}
    busy = machine_busy()
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    cpu = {name: cpu_seconds(pid) - before[name] for name, pid in target.pids.items()}
    cpu["whole machine"] = machine_busy() - busy
    shutil.rmtree(phase_dir, ignore_errors=True)
    line = next(line for line in out.splitlines() if line.startswith("BENCH "))
    stats = json.loads(line.removeprefix("BENCH "))
    if not warm_up and (stats["wrapped"] or stats["failed"] or stats["errors"]):
        log(f"warning: gateway phase {stats} (wrapped = batches sent twice: more --pool)")
    fixes = stats["accepted"] + stats["duplicates"] + stats["rejected"]
    return PhaseResult(
        "ingest through the gateway (wrk, HTTP, JSON)",
        fixes,
        stats["duration_us"] / 1e6,
        p50_ms=stats["p50_us"] / 1000,
        p99_ms=stats["p99_us"] / 1000,
        extra={**stats, "cpu": cpu},
    )


# --- the run ---------------------------------------------------------------------------------


def machine() -> str:
    load = os.getloadavg()[0]
    return f"{os.cpu_count()} cores, load average {load:.1f} at the start, shared with other work"


def run(args: argparse.Namespace) -> dict[str, Any]:
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-ingest-")))
        if args.base_url:
            if not args.database_url:
                raise SystemExit("bench-ingest: --base-url needs --database-url")
            target = Target(
                "the stack at --base-url", args.base_url.rstrip("/"), libpq(args.database_url)
            )
        elif args.stack:
            target = running_stack()
        else:
            target = own_stack(stack, work)
        log(f"target: {target.mode} at {target.base_url}")
        seed_ = asyncio.run(
            seed(target.database_url.replace("postgresql://", "postgresql+asyncpg://", 1))
        )
        fleet = Fleet(seed_.devices)
        slots = TimeSlots(PARTITION_DAYS)
        size = args.batch
        # Warm-up: connections, caches, JIT of the code paths; not measured.
        warm = fleet.batches(4, slots.take(4, size), size, body=False)
        asyncio.run(direct_dedupe(target, seed_, warm, 2))
        gateway(
            target,
            seed_,
            fleet.batches(4, slots.take(4, size), size, body=True),
            2,
            1,
            work,
            warm_up=True,
        )

        results: dict[str, list[PhaseResult]] = {}
        for round_ in range(1, args.rounds + 1):
            count = args.direct_batches
            rows = fleet.batches(count, slots.take(count, size), size, body=False)
            direct = asyncio.run(direct_dedupe(target, seed_, rows, args.clients))
            log(f"round {round_}: {direct.name}: {direct.rate:,.0f} fixes/s")
            results.setdefault("dedupe", []).append(direct)
            # Enough distinct batches for the gateway phase to never send one twice.
            pool = max(args.clients * 4, math.ceil(direct.rate * args.duration * 1.5 / size))
            bodies = fleet.batches(pool, slots.take(pool, size), size, body=True)
            pushed = gateway(target, seed_, bodies, args.clients, args.duration, work)
            del bodies
            log(f"round {round_}: {pushed.name}: {pushed.rate:,.0f} fixes/s")
            results.setdefault("gateway", []).append(pushed)
            for key, phase in (
                ("unnest", direct_unnest),
                ("staging", staging_copy),
                ("copy", direct_copy),
            ):
                rows = fleet.batches(count, slots.take(count, size), size, body=False)
                outcome = asyncio.run(phase(target, seed_, rows, args.clients))
                log(f"round {round_}: {outcome.name}: {outcome.rate:,.0f} fixes/s")
                results.setdefault(key, []).append(outcome)
        best = {key: max(runs, key=lambda r: r.rate) for key, runs in results.items()}
        # Read before the ExitStack stops them (empty when pushing to a stack not ours).
        rss = {name: peak_rss_kib(pid) for name, pid in target.pids.items()}
    return {"target": target, "best": best, "all": results, "args": args, "rss": rss}


WRITE_PATH_NOTE = (
    "Write path: the app sends a batch's fixes as one JSON array parameter "
    "(`jsonb_array_elements`, then `INSERT … ON CONFLICT DO NOTHING` in the same statement as "
    "the batch's counts). Measured against nine typed arrays for `unnest` and against COPY "
    "into a staging table: Postgres does about the same work for all three (within a few "
    "percent when the phases are interleaved; single phases swing far more with the "
    "machine's other load), while the writer's CPU (last column) is lowest for the JSON "
    "array — and the single-process app, not Postgres, is what limits ingest on two cores. "
    "COPY also needs a raw driver connection and three statements. The ratio is given "
    "against the app's statement (the target's definition) and against the fastest direct "
    "dedupe path of the run."
)


def report(outcome: dict[str, Any], started: datetime, machine_line: str) -> str:
    best: dict[str, PhaseResult] = outcome["best"]
    args = outcome["args"]
    target: Target = outcome["target"]
    dedupe = best["dedupe"].rate
    lines = [
        "# Ingest benchmark",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC on this machine ({machine_line}), by "
        "`make bench-ingest` (`bench/ingest/run.py`).",
        "",
        f"Target: {target.mode}. {args.clients} concurrent clients, batches of {args.batch} "
        f"fixes ({VEHICLES_PER_BATCH} vehicles x {args.batch // VEHICLES_PER_BATCH} fixes "
        "5 s apart, "
        "with speed, course, altitude, accuracy and ignition/battery/odometer attributes). "
        f"Best of {args.rounds} alternating rounds per path; every row written is new "
        "(each path gets its own stretch of time).",
        "",
        "| path | fixes/s | x dedupe write | p50 ms | p99 ms | CPU ms / 1,000 fixes: "
        "machine | writer |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key in ("gateway", "dedupe", "unnest", "staging", "copy"):
        result = best[key]
        p50, p99 = result.percentiles()
        cpu = result.extra["cpu"]
        machine_ms = cpu["whole machine"] * 1e6 / result.fixes
        writer = cpu.get("writer", cpu.get("ingest app"))
        writer_ms = f"{writer * 1e6 / result.fixes:.1f}" if writer is not None else "-"
        lines.append(
            f"| {result.name} | {result.rate:,.0f} | {result.rate / dedupe:.2f} | "
            f"{p50:.1f} | {p99:.1f} | {machine_ms:.1f} | {writer_ms} |"
        )
    ratio = best["gateway"].rate / dedupe
    fastest = max((best[k] for k in ("dedupe", "unnest", "staging")), key=lambda r: r.rate)
    gateway_cpu = best["gateway"].extra["cpu"]
    split = ", ".join(
        f"{name} {seconds * 1e6 / best['gateway'].fixes:.1f} ms"
        for name, seconds in gateway_cpu.items()
        if name != "whole machine"
    )
    lines += [
        "",
        f"Ingest through the gateway / direct write with the app's statement: **{ratio:.2f}** "
        f"(target >= 0.5); / the fastest direct dedupe path ({fastest.name}): "
        f"**{best['gateway'].rate / fastest.rate:.2f}**.",
        "",
        f"CPU per 1,000 fixes through the gateway: {split or 'not measured (not our processes)'}"
        " (the rest: Postgres, wrk, Redis and whatever else ran on the machine).",
    ]
    lines += [
        "",
        "Latencies: the gateway's are per HTTP request as wrk measured them (the 202 comes "
        "after the commit and the publish); the direct paths' are per transaction of one batch. "
        "CPU: `machine` is every core's busy time during the phase (Postgres included) per "
        "1,000 fixes; `writer` is the process that sends the rows (the ingest app through the "
        "gateway, the benchmark's own asyncpg client for the direct paths).",
        "",
        "All rounds (fixes/s):",
        "",
    ]
    for runs in outcome["all"].values():
        lines.append(f"- {runs[0].name}: " + ", ".join(f"{r.rate:,.0f}" for r in runs))
    lines += ["", WRITE_PATH_NOTE, "", *target.notes]
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients / connections")
    parser.add_argument("--batch", type=int, default=1000, help="fixes per batch")
    parser.add_argument("--duration", type=int, default=10, help="seconds of the gateway phase")
    parser.add_argument("--direct-batches", type=int, default=120, help="batches per direct phase")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--stack", action="store_true", help="push to the running local stack")
    parser.add_argument("--base-url", help="gateway (or ingest app) base URL to push to")
    parser.add_argument("--database-url", help="that stack's database (with --base-url)")
    parser.add_argument("--no-write", action="store_true", help="do not write RESULTS.md")
    parser.add_argument("--figures", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit(
            "bench-ingest: wrk is missing (apt-get install wrk, or make system-packages)"
        )
    started = datetime.now(UTC)
    machine_line = machine()
    outcome = run(args)
    text = report(outcome, started, machine_line)
    print(text)
    if args.figures:
        write_figures(args.figures, figures(outcome))
    if not args.no_write:
        results = HERE / "RESULTS.md"
        history = _history(results.read_text() if results.exists() else "")
        history.insert(0, _headline(outcome, started, machine_line))
        results.write_text(text + f"\n{HISTORY}\n\n" + "\n".join(history) + "\n")


def figures(outcome: dict[str, Any]) -> dict[str, object]:
    """The best round's fixes/s by path (gateway, dedupe, unnest, staging, copy), the
    target, and the peak RSS (KiB) of the processes it started."""
    return {
        "target": outcome["target"].mode,
        "fixes_per_s": {key: result.rate for key, result in outcome["best"].items()},
        "peak_rss_kib": outcome["rss"],
    }


HISTORY = "## Every run so far (the machine is shared: its load moves the figures)"


def _history(previous: str) -> list[str]:
    if HISTORY not in previous:
        return []
    return [line for line in previous.split(HISTORY, 1)[1].splitlines() if line.startswith("- ")]


def _headline(outcome: dict[str, Any], started: datetime, machine_line: str) -> str:
    best: dict[str, PhaseResult] = outcome["best"]
    fastest = max((best[k] for k in ("dedupe", "unnest", "staging")), key=lambda r: r.rate)
    load = machine_line.split("load average ", 1)[1].split(" ", 1)[0]
    return (
        f"- {started:%Y-%m-%d %H:%M} UTC, load {load}: gateway {best['gateway'].rate:,.0f} "
        f"fixes/s, app's statement {best['dedupe'].rate:,.0f}, ratio "
        f"**{best['gateway'].rate / best['dedupe'].rate:.2f}** "
        f"(vs fastest dedupe path {best['gateway'].rate / fastest.rate:.2f})"
    )


if __name__ == "__main__":
    main()
