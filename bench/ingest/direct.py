"""The ingest benchmark's floors: the same rows written straight into ``positions`` with
asyncpg (the app's own dedupe statement, unnest arrays, plain COPY, COPY into a staging table
then the conflict-skipping insert), and what a phase measured."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect

from bench.ingest.fleet import Batch
from bench.ingest.target import Seed, Target, machine_busy
from milepost_common.domain.positions.repository import INSERT_NEW_POSITIONS, NewPositions

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
        values = {
            "org_id": seed_.org_id,
            "batch_id": uuid.uuid4(),
            "rows": _rows_json(batch),
            "valid": batch.size,
        }
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
