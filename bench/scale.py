"""The scale run: the simulator's fleet pushing through the gateway of a running `make up` stack
at a given size and report interval for a duration, the processing lag sampled every 10 s,
and whether the lag stayed flat.

    make up
    uv run python -m bench.scale --vehicles 5000 --interval 10 --duration 300
    make down

The fleet is milepost-sim's (``milepost_sim.fleet``: the same vehicles, trajectories and
pusher as ``milepost-sim run``), every vehicle a tracker behind an upstream gateway: each
second the fixes that fell due are pushed as JSON batches of at most ``--batch`` fixes, as
gateways do, instead of one request per fix (the simulator's phones use OsmAnd, one request
per fix, which the gateway's per-IP rate limit of 200 requests/s would throttle long before
the stack's capacity). The organization ``Scale run`` (devices ``scale-0001``…, a speed limit
and three alert rules) is created in the stack's database on first use and reused; its data
stays, like the demo's. The run starts nothing but its own threads: the stack is `make up`'s.

Processing lag is what the worker's heartbeat exports as
``milepost_worker_oldest_unprocessed_batch_age_seconds`` and admin shows: now minus the
receive time of the oldest batch still ``received``, ``queued`` or ``processing``, read here
from ``ingest_batches`` with the database's clock. The run is flat when the highest lag of
its last minute is at most the highest of its first minute plus ``--tolerance`` seconds (for
a run shorter than 3 minutes, its last and first thirds).
Figures go to stdout and, with ``--out``, to a JSON file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlmodel import col, select

from bench.support import children, cpu_seconds, libpq
from milepost_common.db import create_database, unit_of_work
from milepost_common.domain.alert_rules.models import AlertRule
from milepost_common.domain.alerts.models import AlertType
from milepost_common.domain.api_keys import service as api_key_service
from milepost_common.domain.api_keys.models import Scope
from milepost_common.domain.devices.models import Device
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.principals import SYSTEM
from milepost_common.settings import DbSettings
from milepost_sim.fleet import Fleet, VehicleSpec, fleet_specs
from milepost_sim.push import Pusher
from milepost_sim.runner import day_start, run_live

ORG_NAME = "Scale run"
PREFIX = "scale-"
SPEED_LIMIT_KMH = 50.0
RULES: dict[AlertType, dict[str, Any]] = {
    AlertType.OVERSPEED: {"multiplier": 1.1, "min_duration_s": 20},
    AlertType.LOW_BATTERY: {"threshold_pct": 20},
    AlertType.IDLE: {"min_duration_s": 300},
}
# The oldest batch not processed yet, by the database's clock (0 when there is none).
LAG_SQL = """
SELECT coalesce(extract(epoch FROM now() - min(received_at)), 0)::float8, count(*)
FROM ingest_batches WHERE status IN ('received', 'queued', 'processing')
"""


# What the run writes: WAL, and the tables that grow with fixes (positions: its partitions).
TABLES = ("positions", "ingest_batches", "device_state", "trips", "stops", "alerts",
          "motion_checkpoints")  # fmt: skip
SIZES_SQL = """
SELECT t.name, greatest(pg_total_relation_size(t.name::regclass),
                        (SELECT sum(pg_total_relation_size(p.relid))::bigint
                         FROM pg_partition_tree(t.name::regclass) AS p))
FROM unnest($1::text[]) AS t(name)
"""


async def _footprint(conn: asyncpg.Connection) -> tuple[int, dict[str, int]]:
    """The WAL position (bytes) and each table's size with its indexes and partitions."""
    wal = await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")
    return int(wal), {name: int(size) for name, size in await conn.fetch(SIZES_SQL, TABLES)}


def log(message: str) -> None:
    print(f"bench-scale: {message}", file=sys.stderr, flush=True)


# -- the verdict (pure) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    t_s: float  # seconds since the fleet started
    lag_s: float
    pending: int  # batches not processed yet
    sent: int  # fixes sent so far


@dataclass(frozen=True, slots=True)
class Verdict:
    flat: bool
    first_max_s: float
    last_max_s: float
    slope_s_per_min: float  # least-squares slope of the lag over the whole run
    reason: str


def _slope(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / var


def verdict(samples: list[Sample], window_s: float = 60.0, tolerance_s: float = 5.0) -> Verdict:
    """Flat when the highest lag of the last ``window_s`` is at most the highest of the first
    ``window_s`` plus ``tolerance_s``. Needs samples spanning at least two windows."""
    if not samples:
        raise ValueError("no samples")
    end = samples[-1].t_s
    if end < 2 * window_s:
        raise ValueError(f"the samples span {end:.0f} s; a verdict needs {2 * window_s:.0f} s")
    first = [s.lag_s for s in samples if s.t_s <= window_s]
    last = [s.lag_s for s in samples if s.t_s >= end - window_s]
    first_max, last_max = max(first), max(last)
    slope = _slope([(s.t_s, s.lag_s) for s in samples]) * 60
    flat = last_max <= first_max + tolerance_s
    span = f"{window_s:g} s"
    compared = f"the last {span}'s max {last_max:.1f} s {'<=' if flat else '>'} the first {span}'s"
    reason = f"{compared} {first_max:.1f} s + {tolerance_s:g} s"
    if not flat:
        reason += ": processing falls behind"
    return Verdict(flat, first_max, last_max, slope, reason)


# -- the fleet in gateway batches --------------------------------------------------------


class GatewayPusher(Pusher):
    """The simulator's pusher, sending a round's fixes as batches of at most ``batch``."""

    def __init__(self, *args: Any, batch: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch = batch

    def push_batch(self, fixes: Any) -> dict[str, Any] | None:
        answer = None
        for first in range(0, len(fixes), self.batch):
            answer = super().push_batch(fixes[first : first + self.batch]) or answer
        return answer


class Ticks(threading.Event):
    """The run's stop event; its waits end on a tick boundary, so each round (a tick's due
    fixes) goes out together, once a tick, as a gateway's upload does."""

    def __init__(self, tick_s: float) -> None:
        super().__init__()
        self.tick_s = tick_s

    def clock(self) -> float:
        return math.floor(time.time() / self.tick_s) * self.tick_s

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is None:
            return super().wait()
        until = math.ceil((time.time() + timeout) / self.tick_s) * self.tick_s
        return super().wait(max(0.0, until - time.time()))


def gateway_fleet(vehicles: int) -> list[VehicleSpec]:
    """The simulator's fleet with every vehicle a tracker behind a gateway."""
    width = max(4, len(str(vehicles)))
    return [
        dataclasses.replace(
            spec, unique_id=f"{PREFIX}{spec.index + 1:0{width}d}", transport="batch"
        )
        for spec in fleet_specs(vehicles, PREFIX)
    ]


# -- the stack ---------------------------------------------------------------------------


@dataclass
class StackInfo:
    gateway_url: str
    database_url: str  # libpq form
    pepper: str  # the stack's API key pepper: keys are hashed with it
    pids: dict[str, int] = field(default_factory=dict)


def running_stack() -> StackInfo:
    from milepost_devstack.config import StackConfig
    from milepost_devstack.net import http_status
    from milepost_devstack.stack import Stack

    stack = Stack(StackConfig.from_environ())
    if http_status(f"{stack.gateway_url}/ingest/ready") != 200:
        raise SystemExit(f"bench-scale: {stack.gateway_url} does not answer: run `make up`")
    pids = {s.name: s.pid for s in stack.status() if s.pid is not None}
    credentials = stack.credentials()
    return StackInfo(
        stack.gateway_url,
        libpq(stack.database_url(credentials)),
        credentials.api_key_pepper,
        pids=pids,
    )


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process, its reaped children and its live descendants."""
    return cpu_seconds(pid) + sum(tree_cpu_s(child) for child in children(pid))


async def set_up(database_url: str, pepper: str, specs: list[VehicleSpec]) -> str:
    """The organization, its missing devices and rules, and a new API key (its secret)."""
    db = create_database(
        DbSettings(url=database_url.replace("postgresql://", "postgresql+asyncpg://", 1))
    )
    try:
        async with unit_of_work(db) as session:
            org = (
                await session.execute(
                    select(Organization).where(col(Organization.name) == ORG_NAME)
                )
            ).scalar_one_or_none()
            if org is None:
                org = Organization(name=ORG_NAME, ingest_rate_limit="1000000/minute")
                session.add(org)
                await session.flush()
                session.add_all(
                    AlertRule(org_id=org.id, name=str(t), type=t, params=p)
                    for t, p in RULES.items()
                )
            known = set(
                (
                    await session.execute(
                        select(Device.unique_id).where(col(Device.org_id) == org.id)
                    )
                ).scalars()
            )
            missing = [
                Device(
                    org_id=org.id,
                    unique_id=spec.unique_id,
                    name=spec.name,
                    speed_limit_kmh=SPEED_LIMIT_KMH,
                )
                for spec in specs
                if spec.unique_id not in known
            ]
            session.add_all(missing)
            issued = await api_key_service.issue_api_key(
                session,
                SYSTEM,
                org.id,
                f"scale run {uuid.uuid4().hex[:6]}",
                scopes=[Scope.INGEST],
                pepper=pepper,
            )
        log(f"organization {ORG_NAME!r}: {len(missing)} devices registered, {len(known)} reused")
        return str(issued.secret)
    finally:
        await db.dispose()


def wait_for(future: Future[Any], timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        future.exception(timeout)


# -- the run -----------------------------------------------------------------------------


async def _lag(conn: asyncpg.Connection) -> tuple[float, int]:
    row = await conn.fetchrow(LAG_SQL)
    return float(row[0]), int(row[1])


async def drain(conn: asyncpg.Connection, timeout_s: float, when: str) -> float | None:
    """Wait until no batch is left to process; the seconds it took (None: not within
    ``timeout_s``)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        _lag_s, pending = await _lag(conn)
        if pending == 0:
            return round(time.monotonic() - started, 1)
        await asyncio.sleep(1)
    log(f"{when}: batches still pending after {timeout_s:g} s")
    return None


async def run(args: argparse.Namespace) -> dict[str, Any]:
    stack = running_stack()
    specs = gateway_fleet(args.vehicles)
    key = await set_up(stack.database_url, stack.pepper, specs)
    await asyncio.sleep(6)  # the ingest's cache of an organization's devices: 5 s
    rate = args.vehicles / args.interval
    ticks = Ticks(1.0)
    fleet = Fleet(specs, args.seed, day_start(datetime.now(UTC)))
    # A vehicle's first fix walks its day from midnight (about 2 ms): done before the clock runs.
    warm = datetime.now(UTC)
    for vehicle in fleet.vehicles:
        vehicle.fix_at(warm)
    pusher = GatewayPusher(stack.gateway_url, key, batch=args.batch, sleep=ticks.wait)
    conn = await asyncpg.connect(stack.database_url)
    try:
        log(
            f"{args.vehicles} vehicles every {args.interval:g} s = {rate:,.0f} fixes/s for "
            f"{args.duration:.0f} s through {stack.gateway_url} (batches of <= {args.batch})"
        )
        await drain(conn, args.drain_timeout, "before the run")
        wal0, sizes0 = await _footprint(conn)
        cpu0 = {name: tree_cpu_s(pid) for name, pid in stack.pids.items()}
        own0 = sum(os.times()[:2])
        wall0 = time.monotonic()
        # Ctrl-C or SIGTERM stops the fleet early; the run so far is still measured and reported.
        for signum in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(signum, ticks.set)
        pool = ThreadPoolExecutor(1, thread_name_prefix="fleet")
        driver = pool.submit(
            run_live,
            pusher,
            fleet,
            rate=rate,
            duration_s=args.duration,
            stop=ticks,
            clock=ticks.clock,
        )
        pool.shutdown(wait=False)
        samples: list[Sample] = []
        while not driver.done():
            lag, pending = await _lag(conn)
            sample = Sample(
                round(time.monotonic() - wall0, 1), round(lag, 2), pending, pusher.stats.sent
            )
            samples.append(sample)
            log(f"t={sample.t_s:5.0f} s  lag {sample.lag_s:6.2f} s  pending {pending:4d}")
            await asyncio.to_thread(wait_for, driver, args.sample_every)
        wall = time.monotonic() - wall0
        own = sum(os.times()[:2]) - own0
        cpu = {name: tree_cpu_s(pid) - cpu0[name] for name, pid in stack.pids.items()}
        lag, pending = await _lag(conn)
        samples.append(Sample(round(wall, 1), round(lag, 2), pending, pusher.stats.sent))
        drained_after = await drain(conn, args.drain_timeout, "after the run")
        wal1, sizes1 = await _footprint(conn)
    finally:
        ticks.set()  # ends the fleet's run early when the sampling failed or was interrupted
        await conn.close()
        pusher.close()
    driver.result()  # the fleet's exception, if it stopped on one
    stats = pusher.stats
    judged = verdict(samples, window_s=min(60.0, wall / 3), tolerance_s=args.tolerance)
    return {
        "at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "vehicles": args.vehicles,
        "interval_s": args.interval,
        "duration_s": round(wall, 1),
        "batch": args.batch,
        "target_fixes_per_s": round(rate, 1),
        "sent_fixes_per_s": round(stats.sent / wall, 1),
        "accepted_fixes_per_s": round(stats.accepted / wall, 1),
        "sent": stats.sent,
        "accepted": stats.accepted,
        "rejected": stats.rejected,
        "duplicates": stats.duplicates,
        "batches": stats.batches,
        "retries": stats.retries,
        "failed": stats.failed,
        "lag_min_s": min(s.lag_s for s in samples),
        "lag_max_s": max(s.lag_s for s in samples),
        "lag_last_s": samples[-1].lag_s,
        "flat": judged.flat,
        "verdict": judged.reason,
        "first_minute_max_s": judged.first_max_s,
        "last_minute_max_s": judged.last_max_s,
        "slope_s_per_min": round(judged.slope_s_per_min, 3),
        "drained_after_s": drained_after,
        # Over the run and its drain: WAL and table growth per fix stored (no VACUUM).
        "wal_bytes_per_fix": round((wal1 - wal0) / max(1, stats.accepted), 1),
        "growth_bytes_per_fix": {
            name: round((sizes1[name] - sizes0[name]) / max(1, stats.accepted), 1)
            for name in TABLES
        },
        "cpu_cores": {"simulator": round(own / wall, 2)}
        | {name: round(seconds / wall, 2) for name, seconds in cpu.items()},
        "load_average": os.getloadavg()[0],
        "samples": [dataclasses.asdict(s) for s in samples],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--vehicles", type=int, default=5000)
    parser.add_argument("--interval", type=float, default=10.0, help="s between a vehicle's fixes")
    parser.add_argument("--duration", type=float, default=300.0, help="seconds (>= 60)")
    parser.add_argument("--batch", type=int, default=100, help="fixes per batch at most")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sample-every", type=float, default=10.0, help="s between lag samples")
    parser.add_argument("--tolerance", type=float, default=5.0, help="s of lag growth allowed")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=120.0,
        help="s to wait after the run for the backlog to empty",
    )
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    if args.duration < 60:
        parser.error("--duration must be at least 60 s")
    figures = asyncio.run(run(args))
    summary = {k: v for k, v in figures.items() if k != "samples"}
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
        log(f"figures written to {args.out}")


if __name__ == "__main__":
    main()
