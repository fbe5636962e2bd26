"""The engine every app and worker uses: what happens to a pooled connection the server
closed while it sat idle (Postgres restarted, a backend terminated), and what a failed
statement's error says."""

from __future__ import annotations

import asyncio

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import make_url, text
from sqlalchemy.exc import DBAPIError

from milepost_common.db import create_database
from milepost_common.settings import DbSettings


async def _backend_pid(db_url: str, *, pre_ping: bool) -> tuple[int, int]:
    """The backend of the pool's one connection before and after the server terminates it."""
    db = create_database(
        DbSettings(url=db_url, pool_size=1, max_overflow=0, pool_pre_ping=pre_ping)
    )
    try:
        async with db.sessionmaker() as session:
            before = int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)
        libpq = make_url(db_url).set(drivername="postgresql").render_as_string(False)
        admin = await asyncpg.connect(libpq)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", before)
        finally:
            await admin.close()
        await asyncio.sleep(0.3)  # the driver reads the server's goodbye and the closed socket
        async with db.sessionmaker() as session:
            after = int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)
        return before, after
    finally:
        await db.dispose()


async def test_a_connection_the_server_closed_is_replaced_without_a_pre_ping(
    committed_database: str,
) -> None:
    before, after = await _backend_pid(committed_database, pre_ping=False)

    assert after != before  # a fresh connection, and no error for the request that got it


async def test_a_failed_statement_names_no_parameter(database_url: str) -> None:
    # A value a statement carried (a receiver's URL with its token) never reaches the error's
    # text, which tracebacks put in the logs and the worker in a batch's last_error.
    db = create_database(DbSettings(url=database_url, pool_size=1, max_overflow=0))
    try:
        async with db.sessionmaker() as session:
            try:
                await session.execute(
                    text("SELECT 1 / 0 WHERE CAST(:v AS text) IS NOT NULL"),
                    {"v": "token=never-shown"},
                )
            except DBAPIError as exc:
                error = str(exc)
            else:
                raise AssertionError("no error")
    finally:
        await db.dispose()
    assert "division by zero" in error
    assert "never-shown" not in error
