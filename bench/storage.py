"""Bytes per stored fix: a scratch database migrated as the benchmarks do, seeded with fixes
written by the ingest app's own statement in batches, then VACUUM ANALYZE and the sizes of
the ``positions`` partitions (heap, each index, the whole) divided by the fixes they hold,
and the WAL the writes produced.

    uv run python -m bench.storage                  # 1,000,000 fixes, batches of 100
    uv run python -m bench.storage --fixes 200000   # smaller

The fixes are bench/ingest's fleet (``bench.ingest.fleet``): 200 vehicles driving around
Berlin with speed, course, altitude, accuracy and three attributes (ignition, battery,
odometer), one fix every 5 s each, a gateway's batch holding 20 vehicles' fixes; the
organization, devices and key are seeded by bench/ingest's ``seed``. The database lives on
the server of MILEPOST_BENCH_DATABASE_URL or MILEPOST_TEST_DATABASE_URL, else on a
throwaway local Postgres, and is dropped afterwards. Figures go to
bench/results/storage.md and storage.json (``--no-write`` leaves them alone).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from bench.ingest.direct import _dedupe_sql, _rows_json
from bench.ingest.fleet import VEHICLES, VEHICLES_PER_BATCH, Fleet
from bench.ingest.target import seed
from bench.support import scratch_database

RESULTS = Path(__file__).resolve().parent / "results"
PARTITION_DAYS_BACK = 3
SECONDS_PER_FIX = 5  # bench.ingest.fleet: each vehicle's fixes are 5 s apart

PARTITIONS_SQL = """
SELECT c.relname, c.oid FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'positions'::regclass ORDER BY c.relname
"""
# Each index of positions (the partitioned parent's), summed over the partitions given.
INDEXES_SQL = """
SELECT parent.relname, sum(pg_relation_size(part.oid))::bigint
FROM pg_index x
JOIN pg_class parent ON parent.oid = x.indexrelid
JOIN pg_inherits i ON i.inhparent = parent.oid
JOIN pg_class part ON part.oid = i.inhrelid
JOIN pg_index px ON px.indexrelid = part.oid
WHERE x.indrelid = 'positions'::regclass AND px.indrelid = ANY($1::oid[])
GROUP BY parent.relname ORDER BY parent.relname
"""


def log(message: str) -> None:
    print(f"bench-storage: {message}", file=sys.stderr, flush=True)


async def write_fixes(url: str, fixes: int, batch: int) -> tuple[int, int, float]:
    """``fixes`` new fixes in batches of ``batch`` with the app's statement, one transaction
    each; (fixes stored, WAL bytes written, seconds)."""
    seeded = await seed(url)
    fleet = Fleet(seeded.devices)
    groups = VEHICLES // VEHICLES_PER_BATCH
    per_vehicle = max(1, batch // VEHICLES_PER_BATCH)
    size = per_vehicle * VEHICLES_PER_BATCH
    chunk = groups * 50  # batches generated at a time (a whole number of rounds)
    total = -(-fixes // size)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=PARTITION_DAYS_BACK - 1)
    sql, order = _dedupe_sql()
    conn = await asyncpg.connect(url)
    stored = 0
    try:
        wal0 = await conn.fetchval("SELECT pg_current_wal_lsn()")
        started = time.perf_counter()
        done = 0
        while done < total:
            count = min(chunk, total - done)
            for generated in fleet.batches(count, start, size, body=False):
                values: dict[str, Any] = {"org_id": seeded.org_id, "batch_id": uuid.uuid4()}
                values["rows"], values["valid"] = _rows_json(generated), generated.size
                row = await conn.fetchrow(sql, *(values[name] for name in order))
                stored += int(row[0])
            done += count
            start += timedelta(seconds=SECONDS_PER_FIX * per_vehicle * -(-count // groups))
            log(f"{stored:,} fixes stored")
        seconds = time.perf_counter() - started
        wal = await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)", wal0)
    finally:
        await conn.close()
    return stored, int(wal), seconds


async def measure(url: str) -> dict[str, Any]:
    """VACUUM ANALYZE, then the sizes of the partitions holding fixes, and of an empty one."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("VACUUM ANALYZE positions")
        partitions = await conn.fetch(PARTITIONS_SQL)
        rows: dict[str, int] = {}
        for name, _oid in partitions:
            rows[name] = await conn.fetchval(f'SELECT count(*) FROM "{name}"')  # noqa: S608
        full = [oid for name, oid in partitions if rows[name]]
        empty = [oid for name, oid in partitions if not rows[name]]
        sizes = await conn.fetchrow(
            "SELECT sum(pg_relation_size(o))::bigint, sum(pg_table_size(o))::bigint,"
            " sum(pg_indexes_size(o))::bigint, sum(pg_total_relation_size(o))::bigint"
            " FROM unnest($1::oid[]) AS o",
            full,
        )
        indexes = dict(await conn.fetch(INDEXES_SQL, full))
        empty_total = (
            await conn.fetchval("SELECT pg_total_relation_size($1::oid)", empty[0])
            if empty
            else None
        )
        row_width = await conn.fetchval("SELECT avg(pg_column_size(p.*))::float8 FROM positions p")
        server = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    return {
        "fixes": sum(rows.values()),
        "partitions_with_fixes": len(full),
        "heap_bytes": sizes[0],
        "table_bytes": sizes[1],
        "index_bytes": sizes[2],
        "total_bytes": sizes[3],
        "indexes": indexes,
        "empty_partition_bytes": empty_total,
        "row_data_bytes": round(row_width, 1),
        "postgres": server,
    }


def per_fix(figures: dict[str, Any]) -> dict[str, float]:
    n = figures["fixes"]
    out = {
        "heap (pg_relation_size)": figures["heap_bytes"] / n,
        "table with TOAST, FSM, VM (pg_table_size)": figures["table_bytes"] / n,
        "indexes (pg_indexes_size)": figures["index_bytes"] / n,
    }
    out |= {f"  index {name}": size / n for name, size in figures["indexes"].items()}
    out["total (pg_total_relation_size)"] = figures["total_bytes"] / n
    out["WAL written by the inserts"] = figures["wal_bytes"] / n
    return out


def write_results(figures: dict[str, Any], command: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "storage.json").write_text(json.dumps(figures, indent=2) + "\n")
    rows = "\n".join(
        f"| {name} | {value:,.1f} |" for name, value in figures["per_fix_bytes"].items()
    )
    mib = figures["total_bytes"] / 2**20
    empty = figures["empty_partition_bytes"]
    cores = os.cpu_count()
    pkey = figures["indexes"].get("positions_pkey", 0) / figures["fixes"]
    lines = [
        "# Bytes per stored fix",
        "",
        f"Run {figures['at']} on {platform.node()} ({cores} cores, Postgres "
        f"{figures['postgres']}), `{command}` (`bench/storage.py`).",
        "",
        f"{figures['fixes']:,} fixes of {VEHICLES} vehicles (bench/ingest's fleet: speed, course, "
        "altitude, accuracy, attributes ignition/battery/odometer) written by the ingest app's "
        f"statement in batches of {figures['batch']} ({figures['write_fixes_per_s']:,.0f} "
        f"fixes/s from one connection), into {figures['partitions_with_fixes']} daily "
        "partitions; then `VACUUM ANALYZE positions`. Sizes are summed over the partitions "
        f"that hold the fixes ({mib:,.1f} MiB in all).",
        "",
        "| per stored fix | bytes |",
        "|---|---:|",
        rows,
        "",
        "A row as Postgres stores it (`avg(pg_column_size(positions.*))`, its 24-byte header "
        f"included) is {figures['row_data_bytes']:.0f} bytes; the heap adds the 4-byte line "
        "pointer, alignment and the pages' free space. The primary key takes "
        f"{pkey:.0f} bytes a fix for 36-byte entries (16-byte device id, 8-byte time, "
        "8-byte index tuple header, 4-byte line pointer): every device inserts at its own "
        "place in the index, so leaf pages split and stay about half full. An empty daily "
        "partition "
        f"with its indexes takes {empty:,} bytes (the migrations keep one per day of the "
        "longest retention plus two ahead). The WAL figure is what `pg_current_wal_lsn()` "
        "advanced over the inserts (full-page images after checkpoints included, `VACUUM` "
        "not): use it for replication and archive bandwidth, not as an exact constant.",
    ]
    (RESULTS / "storage.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.storage",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--fixes", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=100, help="fixes per batch (multiple of 20)")
    parser.add_argument("--no-write", action="store_true", help="leave bench/results alone")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        url = scratch_database(stack, "storage", partition_days_back=PARTITION_DAYS_BACK)
        stored, wal, seconds = asyncio.run(write_fixes(url, args.fixes, args.batch))
        figures = asyncio.run(measure(url))
    figures |= {
        "at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "batch": max(1, args.batch // VEHICLES_PER_BATCH) * VEHICLES_PER_BATCH,
        "stored": stored,
        "wal_bytes": wal,
        "write_fixes_per_s": round(stored / seconds, 1),
    }
    figures["per_fix_bytes"] = {k: round(v, 1) for k, v in per_fix(figures).items()}
    print(json.dumps(figures["per_fix_bytes"], indent=2))
    if not args.no_write:
        command = "uv run python -m bench.storage" + "".join(
            f" {a}" for a in (argv if argv is not None else sys.argv[1:])
        )
        write_results(figures, command)
        log(f"figures written to {RESULTS / 'storage.md'}")


if __name__ == "__main__":
    main()
