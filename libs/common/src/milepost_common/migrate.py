"""``milepost-migrate``: upgrade the shared schema to head and create position partitions.

Safe when several processes start at once: a Postgres advisory lock serialises them, and the
ones that wait find the schema already at head. They wait by polling the lock with no
transaction open: a session blocked in ``pg_advisory_lock()`` keeps its statement's snapshot,
which a ``CREATE INDEX CONCURRENTLY`` run by the lock's holder waits out (a deadlock).

Safe beside live traffic: a statement that needs a table's lock waits at most
``--lock-timeout-ms`` (5 s) for it, since every later query on that table queues behind the
waiting DDL (an export's cursor can hold ``positions`` for minutes); the run is rolled back
and tried again after 1, 2, 4 … 30 s, about 3 minutes in all, then gives up with exit 1.
Indexes built concurrently wait as long as it takes: they block no reader or writer.

``milepost-migrate --check [--wait SECONDS]`` changes nothing: it exits 0 once the head
revision(s) this release's migrations end in have been applied, the database at them or past
them (a later release's migrations run too: its revisions are recorded in
``schema_revisions``), and 1 (one line on stderr) when the database is behind, or cannot be
read, by the end of the wait. Kubernetes runs it as an init container of every app and worker
pod, so a new release's pods start only after its migrate Job has run, and the previous
release's pods still start on the new schema (a rollout's, a rollback's).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import date, timedelta
from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from milepost_common.db import lock_timed_out
from milepost_common.logging import get_logger
from milepost_common.settings import CommonSettings, load_settings

log = get_logger("milepost.migrate")

MIGRATION_LOCK_KEY = 0x6D696C65  # "mile"
CHECK_INTERVAL_S = 2.0
LOCK_POLL_INTERVAL_S = 0.5
PARTITION_DAYS_AHEAD = 2
DEFAULT_RETENTION_DAYS = 365
# Days of partitions created per transaction. Each creation holds several locks until commit
# (the table, its indexes, its TOAST table), and the shared lock table has room for
# max_locks_per_transaction (64 by default) per connection: the 3,650 days of a ten-year
# retention in one transaction failed with "out of shared memory" having created nothing.
PARTITIONS_PER_TRANSACTION = 100
LOCK_TIMEOUT_MS = 5_000
# Waits between the tries of a run whose DDL found a table locked: about 3 minutes in all.
LOCK_RETRY_DELAYS_S: tuple[float, ...] = (1, 2, 4, 8, 15, 30, 30, 30, 30, 30)


class MigrationLocked(Exception):
    """Every try found a table the run changes locked past the lock timeout."""


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(files("milepost_common") / "migrations"))
    return cfg


def _upgrade(connection: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


async def partition_runs(
    conn: AsyncConnection, days_back: int | None = None
) -> list[tuple[date, date]]:
    """The days whose partitions must exist, today − the longest retention (the default's
    with no organization yet) to today + 2 days by the database's clock (UTC), as ``(first,
    last)`` runs of at most PARTITIONS_PER_TRANSACTION days, the newest first: ingest needs
    the days ahead, and a pass cut short leaves no gap behind today."""
    if days_back is None:
        longest = await conn.scalar(text("SELECT max(retention_days) FROM organizations"))
        days_back = DEFAULT_RETENTION_DAYS if longest is None else int(longest)
    today: date = await conn.scalar(text("SELECT (now() AT TIME ZONE 'UTC')::date"))
    first = today - timedelta(days=days_back)
    runs = []
    last = today + timedelta(days=PARTITION_DAYS_AHEAD)
    while last >= first:
        start = max(first, last - timedelta(days=PARTITIONS_PER_TRANSACTION - 1))
        runs.append((start, last))
        last = start - timedelta(days=1)
    return runs


async def create_partitions_between(conn: AsyncConnection, first: date, last: date) -> int:
    """Create the missing daily partitions of ``[first, last]`` in the caller's transaction;
    how many were created."""
    created = await conn.scalar(
        text("SELECT milepost_ensure_position_partitions(:first, :last)"),
        {"first": first, "last": last},
    )
    return int(created or 0)


async def ensure_partitions(conn: AsyncConnection, days_back: int | None = None) -> int:
    """Create daily partitions from today − the longest retention to today + 2 days: the
    window retention keeps, so that the one never creates what the other drops again the
    next hour. Commits each run of ``partition_runs`` (newest first): however long the
    retention, creation progresses, and what is created stays if a later run fails."""
    created = 0
    runs = await partition_runs(conn, days_back)
    await conn.commit()
    for first, last in runs:
        created += await create_partitions_between(conn, first, last)
        await conn.commit()
    return created


async def acquire_migration_lock(
    conn: AsyncConnection, poll_s: float = LOCK_POLL_INTERVAL_S
) -> None:
    """Take the session-level migration lock, waiting as long as it takes, between tries with
    no transaction (so no snapshot) open."""
    while True:
        taken = await conn.scalar(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
        )
        await conn.commit()
        if taken:
            return
        await asyncio.sleep(poll_s)


async def migrate(
    url: str,
    *,
    revision: str = "heads",
    partition_days_back: int | None = None,
    lock_timeout_ms: int = LOCK_TIMEOUT_MS,
    retry_delays_s: tuple[float, ...] = LOCK_RETRY_DELAYS_S,
) -> None:
    """Upgrade to ``revision`` and, at head, create the position partitions. Raises
    MigrationLocked when every try found a table locked past ``lock_timeout_ms``."""
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            await acquire_migration_lock(conn)
            try:
                for delay in (*retry_delays_s, None):
                    try:
                        await _apply(conn, revision, partition_days_back, lock_timeout_ms)
                        break
                    except DBAPIError as exc:
                        await conn.rollback()
                        if not lock_timed_out(exc):
                            raise
                        if delay is None:
                            raise MigrationLocked(
                                f"a table it changes stayed locked past {lock_timeout_ms} ms on"
                                f" each of {len(retry_delays_s) + 1} tries (a long query or"
                                " transaction: see pg_stat_activity); nothing was changed"
                                " by the last try"
                            ) from exc
                        log.warning(
                            "migration_lock_wait", lock_timeout_ms=lock_timeout_ms, retry_in_s=delay
                        )
                        await asyncio.sleep(delay)
            except BaseException:
                await conn.rollback()
                raise
            finally:
                await conn.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
                await conn.commit()
    finally:
        await engine.dispose()


async def _apply(
    conn: AsyncConnection, revision: str, partition_days_back: int | None, lock_timeout_ms: int
) -> None:
    # For the session, committed on its own: the migrations open their own transaction.
    await conn.execute(
        text("SELECT set_config('lock_timeout', :timeout, false)"),
        {"timeout": f"{lock_timeout_ms}ms"},
    )
    await conn.commit()
    await conn.run_sync(_upgrade, revision)
    await conn.commit()
    if revision in ("head", "heads"):
        await ensure_partitions(conn, partition_days_back)


def release_heads() -> set[str]:
    """The head revision(s) this release's migrations end in."""
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def _current_heads(connection: Connection) -> set[str]:
    return set(MigrationContext.configure(connection).get_current_heads())


def _recorded_revisions(connection: Connection) -> set[str]:
    if connection.scalar(text("SELECT to_regclass('schema_revisions')")) is None:
        return set()  # before 0009
    return set(connection.scalars(text("SELECT revision FROM schema_revisions")))


def _schema_state(connection: Connection) -> tuple[set[str], set[str]]:
    return _current_heads(connection), _recorded_revisions(connection)


async def schema_state(url: str, *, connect_timeout_s: float = 5.0) -> tuple[set[str], set[str]]:
    """The revision(s) the database is at, and every revision recorded as applied."""
    engine = create_async_engine(
        url, poolclass=pool.NullPool, connect_args={"timeout": connect_timeout_s}
    )
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_schema_state)
    finally:
        await engine.dispose()


async def database_heads(url: str, *, connect_timeout_s: float = 5.0) -> set[str]:
    """The revision(s) the database is at (empty before the first migration)."""
    current, _ = await schema_state(url, connect_timeout_s=connect_timeout_s)
    return current


async def check(
    url: str, *, wait_s: float = 0.0, interval_s: float = CHECK_INTERVAL_S
) -> str | None:
    """None once this release's heads are applied (the database at them or past them);
    otherwise why not, after polling for up to ``wait_s`` seconds (a database not reachable
    yet counts as not ready)."""
    expected = release_heads()
    deadline = time.monotonic() + wait_s
    while True:
        try:
            current, recorded = await schema_state(url, connect_timeout_s=max(1.0, interval_s))
        except (OSError, SQLAlchemyError, TimeoutError) as exc:
            problem = f"cannot read the schema version: {type(exc).__name__}"
        else:
            if expected <= current | recorded:
                return None
            problem = (
                f"the schema is at {', '.join(sorted(current)) or 'no revision'}; this release"
                f" needs {', '.join(sorted(expected))} (run milepost-migrate first)"
            )
        if time.monotonic() + interval_s > deadline:
            return problem
        await asyncio.sleep(interval_s)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Upgrade the Milepost database schema.")
    parser.add_argument("--revision", default="heads")
    parser.add_argument(
        "--check",
        action="store_true",
        help="Change nothing: exit 0 when this release's head is applied (the schema at it or"
        " past it), else 1.",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="With --check: keep checking (every 2 s) for up to this long.",
    )
    parser.add_argument(
        "--lock-timeout-ms",
        type=int,
        default=LOCK_TIMEOUT_MS,
        help="How long a statement waits for a table's lock before the run is rolled back and"
        " tried again later (default: %(default)s).",
    )
    parser.add_argument(
        "--partition-days-back",
        type=int,
        default=None,
        help="Days of position partitions to create behind today "
        "(default: the longest organization retention).",
    )
    args = parser.parse_args(argv)
    settings = load_settings(CommonSettings)
    if args.check:
        problem = asyncio.run(check(settings.db.url, wait_s=args.wait))
        if problem is not None:
            print(f"milepost-migrate: {problem}", file=sys.stderr)  # noqa: T201 - a CLI's answer
            raise SystemExit(1)
        print("milepost-migrate: the schema is at this release's head or past it")  # noqa: T201
        return
    try:
        asyncio.run(
            migrate(
                settings.db.url,
                revision=args.revision,
                partition_days_back=args.partition_days_back,
                lock_timeout_ms=args.lock_timeout_ms,
            )
        )
    except MigrationLocked as exc:
        print(f"milepost-migrate: gave up: {exc}", file=sys.stderr)  # noqa: T201 - a CLI's answer
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
