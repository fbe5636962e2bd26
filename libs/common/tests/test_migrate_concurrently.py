"""``milepost-migrate`` run several times at once (the migrate Job retried next to a second
apply, compose and the Job both) from an empty database, rerun after an index build that
was cut short, and run beside a long reader of a table it changes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from milepost_common.migrate import (
    MIGRATION_LOCK_KEY,
    MigrationLocked,
    database_heads,
    migrate,
    release_heads,
)
from milepost_common.testing.plugin import clone_database, drop_database

MIGRATORS = 3
BEFORE_THE_INDEX = "0006_device_offline_since"
BEFORE_THE_REPAIR = "0008_user_sessions_ended"
INDEX = "ix_ingest_batches_rejected_expiry"


@pytest.fixture
async def empty_database(template_database_url: str) -> AsyncIterator[str]:
    """A database with no schema at all (a copy of template0)."""
    template0 = make_url(template_database_url).set(database="template0")
    url = await clone_database(template0.render_as_string(hide_password=False), "milepost_empty")
    yield url
    await drop_database(url)


async def invalid_indexes(url: str) -> list[str]:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid")
            )
            return sorted(rows.scalars())
    finally:
        await engine.dispose()


async def index_exists(url: str, name: str) -> bool:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return bool(await conn.scalar(text("SELECT to_regclass(:n) IS NOT NULL"), {"n": name}))
    finally:
        await engine.dispose()


async def start_migrators(url: str, count: int) -> list[asyncio.subprocess.Process]:
    env = {**os.environ, "MILEPOST_DB__URL": url}
    command = [sys.executable, "-m", "milepost_common.migrate", "--partition-days-back", "2"]
    return [
        await asyncio.create_subprocess_exec(
            *command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for _ in range(count)
    ]


async def outcomes(processes: list[asyncio.subprocess.Process]) -> list[tuple[int, str]]:
    results = []
    for process in processes:
        _, err = await asyncio.wait_for(process.communicate(), 120)
        results.append((process.returncode or 0, err.decode()[-300:]))
    return results


async def run_all_waiting_first(url: str, count: int) -> list[tuple[int, str]]:
    """Start ``count`` migrators while the lock is held, so that every one of them is waiting
    for it when the first to get it reaches the index built concurrently."""
    engine = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as holder:
            await holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            processes = await start_migrators(url, count)
            others = text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            for _ in range(600):
                if await holder.scalar(others) == count:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # each has asked for the lock by now
            await holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
    finally:
        await engine.dispose()
    return await outcomes(processes)


async def cut_index_build_short(url: str) -> None:
    """Leave the index as an interrupted CREATE INDEX CONCURRENTLY does: present, invalid."""
    engine = create_async_engine(url, poolclass=NullPool)
    builder = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as writer, builder.connect() as conn:
            await conn.execute(text(f"DROP INDEX IF EXISTS {INDEX}"))
            # An open writer: the build waits for it, and the timeout cancels the build there.
            await writer.execute(text("LOCK TABLE ingest_batches IN ROW EXCLUSIVE MODE"))
            await conn.execute(text("SET statement_timeout = '300ms'"))
            with pytest.raises(DBAPIError, match="statement timeout"):
                await conn.execute(
                    text(
                        f"CREATE INDEX CONCURRENTLY {INDEX} ON ingest_batches"
                        " (rejected_items_expire_at) WHERE rejected_items_expire_at IS NOT NULL"
                    )
                )
            await writer.rollback()
    finally:
        await builder.dispose()
        await engine.dispose()


@pytest.mark.slow
async def test_runs_at_once_from_an_empty_database_all_succeed(empty_database: str) -> None:
    results = await run_all_waiting_first(empty_database, MIGRATORS)

    assert results == [(0, "")] * MIGRATORS
    assert await database_heads(empty_database) == release_heads()
    assert await invalid_indexes(empty_database) == []


async def test_a_rerun_rebuilds_an_index_left_invalid(empty_database: str) -> None:
    await migrate(empty_database, revision=BEFORE_THE_INDEX)
    await cut_index_build_short(empty_database)
    assert await invalid_indexes(empty_database) == [INDEX]

    await migrate(empty_database, partition_days_back=2)

    assert await invalid_indexes(empty_database) == []
    assert await index_exists(empty_database, INDEX)


async def test_the_next_release_rebuilds_an_index_a_run_at_once_left_invalid(
    empty_database: str,
) -> None:
    """Databases that two runs at once left at 0008 with 0007's index invalid (before the lock
    was waited for safely) get it rebuilt by 0010."""
    await migrate(empty_database, revision=BEFORE_THE_REPAIR)
    await cut_index_build_short(empty_database)
    assert await invalid_indexes(empty_database) == [INDEX]

    await migrate(empty_database, partition_days_back=2)

    assert await invalid_indexes(empty_database) == []
    assert await index_exists(empty_database, INDEX)


BEFORE_A_NEW_COLUMN = "0007_rejected_items_expiry"  # 0008 adds users.sessions_ended_at


async def has_new_column(url: str) -> bool:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            found = await conn.scalar(
                text(
                    "SELECT count(*) FROM information_schema.columns"
                    " WHERE table_name = 'users' AND column_name = 'sessions_ended_at'"
                )
            )
            return bool(found)
    finally:
        await engine.dispose()


async def read_users(url: str) -> float | str:
    """Seconds a read of users took, or what stopped it (3 s at most)."""
    engine = create_async_engine(url, poolclass=NullPool)
    started = time.monotonic()
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SET statement_timeout = '3s'"))
            await conn.scalar(text("SELECT count(*) FROM users"))
        return time.monotonic() - started
    except DBAPIError as exc:
        return str(exc.orig)
    finally:
        await engine.dispose()


async def test_ddl_waiting_behind_a_long_reader_holds_no_other_query_up(
    empty_database: str,
) -> None:
    # A long transaction reads users (a report, a console page's export). The release's
    # ALTER TABLE users waited behind it for its exclusive lock, and every query on users
    # (each sign-in, each token check) queued behind that wait until the reader ended.
    await migrate(empty_database, revision=BEFORE_A_NEW_COLUMN)
    reader = create_async_engine(empty_database, poolclass=NullPool)
    try:
        async with reader.connect() as report:
            await report.scalar(text("SELECT count(*) FROM users"))  # its lock, kept
            migrating = asyncio.create_task(
                migrate(
                    empty_database,
                    partition_days_back=2,
                    lock_timeout_ms=200,
                    retry_delays_s=(0.3,) * 40,
                )
            )
            await asyncio.sleep(0.5)
            reads = [await read_users(empty_database) for _ in range(4)]
            await report.rollback()  # the report ends
        await asyncio.wait_for(migrating, 30)
    finally:
        await reader.dispose()

    assert all(isinstance(took, float) and took < 1.0 for took in reads), reads
    assert await has_new_column(empty_database)
    assert await database_heads(empty_database) == release_heads()


async def test_a_table_locked_past_every_try_is_a_clear_failure_that_changed_nothing(
    empty_database: str,
) -> None:
    await migrate(empty_database, revision=BEFORE_A_NEW_COLUMN)
    reader = create_async_engine(empty_database, poolclass=NullPool)
    try:
        async with reader.connect() as report:
            await report.scalar(text("SELECT count(*) FROM users"))
            with pytest.raises(MigrationLocked, match="stayed locked past 100 ms on each of 3"):
                await migrate(
                    empty_database,
                    partition_days_back=2,
                    lock_timeout_ms=100,
                    retry_delays_s=(0.1, 0.1),
                )
            await report.rollback()
        assert not await has_new_column(empty_database)

        # The migration lock was released: the next run applies the release.
        await migrate(empty_database, partition_days_back=2)
    finally:
        await reader.dispose()

    assert await database_heads(empty_database) == release_heads()
