"""Worker benchmark: a fleet's fixes through real Celery tasks vs the same handlers in-process
vs the pure state machine in memory; and ingest-to-alert-stored latency on an idle worker.

    uv run python -m bench.worker [--vehicles 300] [--minutes 20] [--samples 60]

Postgres: the server of MILEPOST_BENCH_DATABASE_URL or MILEPOST_TEST_DATABASE_URL (a role that
may create databases), else a throwaway local server; a scratch database is created and dropped.
Redis: a throwaway redis-server (AOF, noeviction) on a free port. The worker is
``milepost-worker --concurrency 2`` as a subprocess. Batches are written the way ingest
writes them (``ingest_batches`` row + positions in one transaction, then the task is
published) — the 202 of the ingest app is the moment after that publish. Results are printed
and written to bench/worker/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import col, select

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "services" / "worker" / "tests"))

from worker_processes import RedisProcess, WorkerStack  # noqa: E402

from bench.support import children, peak_rss_kib, write_figures  # noqa: E402
from milepost_common import tasks as names  # noqa: E402
from milepost_common.db import Database, create_database, unit_of_work  # noqa: E402
from milepost_common.domain.alert_rules.models import AlertRule  # noqa: E402
from milepost_common.domain.alerts.models import Alert, AlertType  # noqa: E402
from milepost_common.domain.devices.models import Device  # noqa: E402
from milepost_common.domain.ingest_batches.models import (  # noqa: E402
    BatchSource,
    BatchStatus,
    IngestBatch,
)
from milepost_common.domain.organizations.models import Organization  # noqa: E402
from milepost_common.domain.positions.models import Position  # noqa: E402
from milepost_common.migrate import migrate  # noqa: E402
from milepost_common.settings import DbSettings  # noqa: E402
from milepost_common.testing import services  # noqa: E402
from milepost_worker.handlers.ingest_batches import process_batch  # noqa: E402
from milepost_worker.motion.machine import Fix, MotionParams  # noqa: E402
from milepost_worker.rules.engine import RuleSpec  # noqa: E402
from milepost_worker.runtime import build_context  # noqa: E402
from milepost_worker.settings import WorkerSettings  # noqa: E402
from milepost_worker.timeline import replay  # noqa: E402
from milepost_worker.timeutil import from_micros  # noqa: E402

GATEWAY_SIZE = 10  # vehicles per upstream gateway; each posts one batch per minute
R = 6_371_008.8


@dataclass
class Fleet:
    """Per vehicle, its fixes; per batch, (vehicle index, fixes)."""

    fixes: list[list[Fix]]
    batches: list[list[tuple[int, list[Fix]]]]

    @property
    def total(self) -> int:
        return sum(len(f) for f in self.fixes)


def simulate(vehicles: int, minutes: int, t0: float, seed: int) -> Fleet:
    """Vehicles parking and driving (20-110 km/h, some speeding), fixes every 5-10 s."""
    rnd = random.Random(seed)
    fleet: list[list[Fix]] = []
    for _ in range(vehicles):
        lat = 52.3 + rnd.random() * 0.4
        lon = 13.2 + rnd.random() * 0.4
        t = t0 + rnd.random() * 10
        end = t0 + minutes * 60
        fixes: list[Fix] = []
        battery = 40.0 + rnd.random() * 60
        moving, phase_end, speed, heading = False, t + rnd.uniform(60, 600), 0.0, 0.0
        while t < end:
            if t >= phase_end:
                moving = not moving
                phase_end = t + (rnd.uniform(120, 900) if moving else rnd.uniform(60, 600))
                speed = rnd.uniform(20, 110) / 3.6 if moving else 0.0
                heading = rnd.uniform(0, 2 * math.pi)
            step = rnd.uniform(5, 10)
            t += step
            if moving:
                heading += rnd.gauss(0, 0.1)
                d = speed * step
                lat += d * math.cos(heading) / R * 180 / math.pi
                lon += d * math.sin(heading) / (R * math.cos(math.radians(lat))) * 180 / math.pi
            else:
                lat += rnd.gauss(0, 3) / R * 180 / math.pi
            battery = max(0.0, battery - rnd.random() * 0.05)
            fixes.append(
                Fix(
                    t=round(t * 1_000_000),
                    lat=lat,
                    lon=lon,
                    speed=speed * 3.6 + rnd.gauss(0, 2) if moving else 0.0,
                    accuracy=5.0,
                    attributes={
                        "battery": round(battery, 1),
                        "ignition": moving or rnd.random() < 0.2,
                    },
                )
            )
        fleet.append(fixes)
    batches: list[list[tuple[int, list[Fix]]]] = []
    for minute in range(minutes + 1):
        lo, hi = (t0 + minute * 60) * 1e6, (t0 + (minute + 1) * 60) * 1e6
        for g in range(0, vehicles, GATEWAY_SIZE):
            batch = [
                (v, [f for f in fleet[v] if lo <= f.t < hi])
                for v in range(g, min(g + GATEWAY_SIZE, vehicles))
            ]
            batch = [(v, fs) for v, fs in batch if fs]
            if batch:
                batches.append(batch)
    return Fleet(fleet, batches)


RULES = {
    AlertType.OVERSPEED: {"limit_kmh": 100, "min_duration_s": 20},
    AlertType.LOW_BATTERY: {"threshold_pct": 20},
    AlertType.IDLE: {"min_duration_s": 300},
}


async def create_fleet(db: Database, vehicles: int) -> tuple[uuid.UUID, list[uuid.UUID]]:
    async with unit_of_work(db) as session:
        org = Organization(name=f"bench {uuid.uuid4().hex[:6]}")
        session.add(org)
        await session.flush()
        session.add_all(
            [AlertRule(org_id=org.id, name=str(t), type=t, params=p) for t, p in RULES.items()]
        )
        devices = [
            Device(org_id=org.id, unique_id=uuid.uuid4().hex, name=f"v{i}") for i in range(vehicles)
        ]
        session.add_all(devices)
    return org.id, [d.id for d in devices]


async def write_batches(
    db: Database, org_id: uuid.UUID, devices: list[uuid.UUID], fleet: Fleet
) -> list[uuid.UUID]:
    ids: list[uuid.UUID] = []
    async with unit_of_work(db) as session:
        for batch in fleet.batches:
            batch_id = uuid.uuid4()
            ids.append(batch_id)
            count = sum(len(fs) for _, fs in batch)
            session.add(
                IngestBatch(
                    id=batch_id,
                    org_id=org_id,
                    source=BatchSource.JSON,
                    status=BatchStatus.QUEUED,
                    accepted=count,
                    device_ids=[str(devices[v]) for v, _ in batch],
                )
            )
        await session.flush()
        rows = [
            {
                "device_id": devices[v],
                "org_id": org_id,
                "fix_time": from_micros(f.t),
                "lat": f.lat,
                "lon": f.lon,
                "speed": f.speed,
                "accuracy": f.accuracy,
                "attributes": dict(f.attributes),
                "batch_id": bid,
            }
            for bid, batch in zip(ids, fleet.batches, strict=True)
            for v, fs in batch
            for f in fs
        ]
        for lo in range(0, len(rows), 2000):
            await session.execute(insert(Position).values(rows[lo : lo + 2000]))
    return ids


def pure_machine(fleet: Fleet) -> float:
    specs = [RuleSpec(str(i), str(t), p, None) for i, (t, p) in enumerate(RULES.items())]
    started = time.perf_counter()
    for fixes in fleet.fixes:
        replay(None, fixes, MotionParams(), specs)
    return fleet.total / (time.perf_counter() - started)


async def in_process(settings: WorkerSettings, batch_ids: list[uuid.UUID], total: int) -> float:
    ctx = build_context(settings, application_name="milepost-bench")
    started = time.perf_counter()
    for batch_id in batch_ids:
        await process_batch(ctx, batch_id)
    elapsed = time.perf_counter() - started
    await ctx.aclose()
    return total / elapsed


async def wait_processed(db: Database, batch_ids: list[uuid.UUID], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        async with unit_of_work(db) as session:
            left = (
                await session.execute(
                    select(func.count())
                    .select_from(IngestBatch)
                    .where(
                        col(IngestBatch.id).in_(batch_ids),
                        col(IngestBatch.status) != BatchStatus.PROCESSED,
                    )
                )
            ).scalar_one()
        if not left:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("batches not processed in time")


async def through_celery(stack: WorkerStack, batch_ids: list[uuid.UUID], total: int) -> float:
    started = time.perf_counter()
    for batch_id in batch_ids:
        stack.send(names.INGEST_BATCHES_PROCESS, str(batch_id))
    await wait_processed(stack.db, batch_ids, 1800)
    return total / (time.perf_counter() - started)


async def latency(stack: WorkerStack, samples: int) -> list[float]:
    """Ingest-202 (batch committed, task published) to the alert row stored, idle worker."""
    org_id, devices = await create_fleet(stack.db, samples)
    out: list[float] = []
    now = time.time() - 60
    for i, device_id in enumerate(devices):
        async with unit_of_work(stack.db) as session:
            batch = IngestBatch(
                org_id=org_id,
                source=BatchSource.JSON,
                status=BatchStatus.QUEUED,
                accepted=1,
                device_ids=[str(device_id)],
            )
            session.add(batch)
            await session.flush()
            await session.execute(
                insert(Position).values(
                    device_id=device_id,
                    org_id=org_id,
                    fix_time=datetime.fromtimestamp(now + i, UTC),
                    lat=52.5,
                    lon=13.4,
                    speed=0.0,
                    attributes={"battery": 5},
                    batch_id=batch.id,
                )
            )
        stack.send(names.INGEST_BATCHES_PROCESS, str(batch.id))
        accepted = time.perf_counter()
        while True:
            async with unit_of_work(stack.db) as session:
                found = (
                    await session.execute(select(Alert.id).where(col(Alert.device_id) == device_id))
                ).first()
            if found:
                out.append((time.perf_counter() - accepted) * 1000)
                break
            if time.perf_counter() - accepted > 30:
                raise RuntimeError("no alert within 30 s")
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.05)  # idle between samples
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def bench(args: argparse.Namespace, server_url: str) -> dict[str, Any]:
    base = server_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    name = f"milepost_bench_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(base.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    db_url = base.rsplit("/", 1)[0] + "/" + name
    tmp = Path(tempfile.mkdtemp(prefix="milepost-bench-"))
    redis = RedisProcess(tmp / "redis")
    redis.start()
    stack: WorkerStack | None = None
    try:
        await migrate(db_url, partition_days_back=3)
        t0 = float(int(time.time()) - 86_400)
        fleet = simulate(args.vehicles, args.minutes, t0, seed=7)
        print(
            f"fleet: {args.vehicles} vehicles, {args.minutes} min, {fleet.total} fixes, "
            f"{len(fleet.batches)} batches"
        )
        results: dict[str, Any] = {
            "vehicles": args.vehicles,
            "minutes": args.minutes,
            "fixes": fleet.total,
            "batches": len(fleet.batches),
        }
        results["pure"] = pure_machine(fleet)
        print(f"pure state machine + rules in memory: {results['pure']:,.0f} fixes/s")

        db = create_database(DbSettings(url=db_url, pool_size=4))
        settings = WorkerSettings.model_validate(
            {
                "env": "test",
                "db": {"url": db_url, "pool_size": 4},
                "redis": {"url": redis.url, "cache_db": 1},
            }
        )
        org_a, devices_a = await create_fleet(db, args.vehicles)
        ids_a = await write_batches(db, org_a, devices_a, fleet)
        results["in_process"] = await in_process(settings, ids_a, fleet.total)
        print(f"handlers in-process (one loop): {results['in_process']:,.0f} fixes/s")

        stack = WorkerStack(db_url, redis, metrics_port=0)
        worker = stack.worker(concurrency=2)
        if not stack.consumed_ping(120):
            raise RuntimeError(worker.log_tail())
        org_b, devices_b = await create_fleet(db, args.vehicles)
        ids_b = await write_batches(db, org_b, devices_b, fleet)
        results["celery"] = await through_celery(stack, ids_b, fleet.total)
        print(f"through Celery (prefork, 2 children): {results['celery']:,.0f} fixes/s")
        results["ratio"] = results["celery"] / results["in_process"]
        print(f"Celery / in-process: {results['ratio']:.2f}")
        await asyncio.sleep(1.0)
        lat = await latency(stack, args.samples)
        results["p50"], results["p95"] = percentile(lat, 0.5), percentile(lat, 0.95)
        results["samples"] = len(lat)
        # The main process and its prefork children, read before they are stopped.
        main_pid = worker.process.pid if worker.process else 0
        results["peak_rss_kib"] = {"worker (main)": peak_rss_kib(main_pid)} | {
            f"worker (child {n})": peak_rss_kib(pid)
            for n, pid in enumerate(children(main_pid), start=1)
        }
        print(
            f"ingest-202 -> alert stored: p50 {results['p50']:.0f} ms, p95 {results['p95']:.0f} ms"
        )
        await db.dispose()
        return results
    finally:
        if stack is not None:
            await stack.close()
        redis.stop()
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


def write_results(results: dict[str, Any], path: Path) -> None:
    machine = f"{os.cpu_count()} cores, load average {results['load']:.1f} at the start"
    lines = [
        "# Worker benchmark",
        "",
        f"Run {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} on this machine ({machine}, "
        "shared with other work), by `make bench-worker` (`bench/worker/run.py`).",
        "",
        f"Fleet: {results['vehicles']} vehicles, {results['minutes']} minutes of fixes every "
        f"5-10 s ({results['fixes']:,} fixes), sent as {results['batches']:,} batches (one per "
        f"gateway of {GATEWAY_SIZE} vehicles per minute), with overspeed, low-battery and idle "
        "rules.",
        "",
        "| path | fixes/s |",
        "|---|---|",
        f"| pure state machine + rules, in memory | {results['pure']:,.0f} |",
        f"| handlers in-process, one event loop, same database | {results['in_process']:,.0f} |",
        f"| real Celery tasks (`milepost-worker --concurrency 2`) | {results['celery']:,.0f} |",
        "",
        f"Celery / in-process: **{results['ratio']:.2f}** (target >= 0.5).",
        "",
        f"Ingest-202 to alert stored, idle worker, {results['samples']} samples: "
        f"p50 **{results['p50']:.0f} ms**, p95 **{results['p95']:.0f} ms** (target p95 <= 500 ms). "
        "The ingest app's 202 is modelled as the moment its transaction committed the batch "
        "and its positions and the task was published (the same statements ingest runs); "
        "the clock stops when the alert row is visible in Postgres (polled every 2 ms).",
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vehicles", type=int, default=300)
    parser.add_argument("--minutes", type=int, default=20)
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "RESULTS.md")
    parser.add_argument("--figures", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    url = os.environ.get("MILEPOST_BENCH_DATABASE_URL") or os.environ.get(
        "MILEPOST_TEST_DATABASE_URL"
    )
    with ExitStack() as resources:
        if url is None:
            url = resources.enter_context(services.provide_postgres())
        results = asyncio.run(bench(args, url))
    write_results({**results, "load": load}, args.results)
    if args.figures:
        write_figures(args.figures, results)


if __name__ == "__main__":
    main()
