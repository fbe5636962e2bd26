"""What a vehicle's history read costs Postgres as daily partitions accumulate
(docs/capacity.md): the api's statement, on one connection with generic plans as the api runs
it, for a first page (no ``from``, the API's default), the next page (the cursor) and a
``from``/``to`` day, beside the same first page with its week named as constants (what a
read could send instead if it knew where the vehicle's fixes begin).

    uv run python -m bench.partitions                       # 32 and 368 daily partitions
    uv run python -m bench.partitions --partitions 8 32 368 --reads 500

Each figure is the mean wall time of ``--reads`` statements (random vehicles of 50, three
days of fixes a minute apart, every other partition empty) after 30 to warm the connection's
caches, measured twice in one run; the table prints the better of the two. Nothing is
written: the figures go to stdout, for docs/capacity.md.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import timedelta

import asyncpg  # type: ignore[import-untyped]

from bench.api.seed import seed
from bench.support import scratch_database
from milepost_common.domain.positions.repository import history_statement

# The api's statement for a from/to read, with the week that holds the first page written in
# as constants: pruned when it is planned, so only those days' partitions are opened (one
# statement text a week, prepared once).
_BOUNDED = history_statement(has_after=False, has_start=True, has_end=True, descending=False)


async def _measure(url: str, reads: int) -> dict[str, float]:
    data = await seed(url, vehicles=50, days=3, interval_min=1)
    conn = await asyncpg.connect(url, server_settings={"plan_cache_mode": "force_generic_plan"})
    try:
        first = await conn.fetchval("SELECT min(fix_time) FROM positions")
        day = first.replace(hour=0, minute=0, second=0, microsecond=0)
        week = _BOUNDED.replace("$4", f"'{day.isoformat()}'").replace(
            "$5", f"'{(day + timedelta(days=7)).isoformat()}'"
        )
        rnd = random.Random(1)

        def vehicle() -> object:
            return rnd.choice(data.vehicle_ids)

        def shape(after: bool = False, start: bool = False, end: bool = False) -> str:
            return history_statement(
                has_after=after, has_start=start, has_end=end, descending=False
            )

        reads_of: dict[str, tuple[str, Callable[[], tuple[object, ...]]]] = {
            "first page (no from)": (shape(), lambda: (vehicle(), data.org_id, 101)),
            "next page (cursor)": (
                shape(after=True),
                lambda: (vehicle(), data.org_id, 101, first + timedelta(hours=2)),
            ),
            "a from/to day": (
                shape(start=True, end=True),
                lambda: (vehicle(), data.org_id, 101, first, first + timedelta(days=1)),
            ),
            "first page, its week as constants": (week, lambda: (vehicle(), data.org_id, 101)),
        }
        best: dict[str, float] = {}
        for _ in range(2):
            for name, (statement, args) in reads_of.items():
                for _ in range(30):
                    await conn.fetch(statement, *args())
                started = time.perf_counter()
                for _ in range(reads):
                    await conn.fetch(statement, *args())
                took = (time.perf_counter() - started) / reads * 1000
                best[name] = min(took, best.get(name, took))
        return best
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.partitions", description=__doc__)
    parser.add_argument("--partitions", type=int, nargs="+", default=[32, 368])
    parser.add_argument("--reads", type=int, default=300)
    args = parser.parse_args(argv)
    results: dict[int, dict[str, float]] = {}
    for count in args.partitions:
        with ExitStack() as stack:
            # Partitions from count - 3 days back to 2 ahead (migrate's), about count in all.
            url = scratch_database(stack, "partitions", partition_days_back=count - 3)
            results[count] = asyncio.run(_measure(url, args.reads))
    names = list(next(iter(results.values())))
    print("| read (ms, one connection) | " + " | ".join(f"{n} partitions" for n in results) + " |")
    print("|---|" + "---:|" * len(results))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{r[name]:.2f}" for r in results.values()) + " |")


if __name__ == "__main__":
    main()
