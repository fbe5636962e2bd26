"""A prefork child's pool after Postgres closed a connection while the child sat between tasks
(its event loop not running, so the driver has not seen the socket close)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import make_url, text

from milepost_common.db import Database, create_database
from milepost_worker.settings import WorkerSettings


async def _backend_pid(db: Database) -> int:
    async with db.sessionmaker() as session:
        return int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)


async def test_the_next_task_gets_a_live_connection(
    committed_database: str, settings_factory: Callable[..., WorkerSettings]
) -> None:
    settings = settings_factory(
        WorkerSettings, db={"url": committed_database, "pool_size": 1, "max_overflow": 0}
    )
    # The child: its own loop, run only while a task runs (as Runtime.run does).
    child = ThreadPoolExecutor(max_workers=1)
    loop = await asyncio.to_thread(asyncio.new_event_loop)
    db = create_database(settings.db)

    def task() -> int:
        return loop.run_until_complete(_backend_pid(db))

    try:
        first = await asyncio.get_running_loop().run_in_executor(child, task)
        admin = await asyncpg.connect(
            make_url(committed_database).set(drivername="postgresql").render_as_string(False)
        )
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", first)
        finally:
            await admin.close()
        await asyncio.sleep(0.3)  # between tasks: the child's loop is not running

        second = await asyncio.get_running_loop().run_in_executor(child, task)

        assert second != first  # a fresh connection, and no error for the task
    finally:
        await asyncio.get_running_loop().run_in_executor(
            child, lambda: loop.run_until_complete(db.dispose())
        )
        await asyncio.get_running_loop().run_in_executor(child, loop.close)
        child.shutdown()
