"""The one Alembic environment of the shared database (async, asyncpg)."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from milepost_common.domain.models import metadata
from milepost_common.migrations.objects import include_object

config = context.config


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_object=include_object,
        compare_type=True,
        compare_server_default=False,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online(url: str) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    async with engine.connect() as conn:
        await conn.run_sync(_configure)
    await engine.dispose()


def run() -> None:
    existing: Any = config.attributes.get("connection")
    if existing is not None:  # called from milepost-migrate or a test with a live connection
        _configure(existing)
        return
    asyncio.run(_run_online(config.get_main_option("sqlalchemy.url") or ""))


run()
