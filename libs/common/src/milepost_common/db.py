"""Async database access: one engine per process (per prefork child in the worker).

Apps get the request's transaction from ``SessionDep`` (``web/deps.py``); workers and
scripts use :func:`unit_of_work`. Nothing else commits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from milepost_common.settings import DbSettings
from milepost_common.tracing import trace_engine


@dataclass(frozen=True, slots=True)
class Database:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]

    async def dispose(self) -> None:
        await self.engine.dispose()


def create_database(settings: DbSettings, *, application_name: str = "milepost") -> Database:
    """Build the engine and session factory; connects lazily."""
    server_settings = {"application_name": application_name}
    if settings.statement_timeout_ms:
        server_settings["statement_timeout"] = str(settings.statement_timeout_ms)
    if settings.plan_cache_mode != "auto":
        server_settings["plan_cache_mode"] = settings.plan_cache_mode
    engine = create_async_engine(
        settings.url,
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout_s,
        pool_pre_ping=settings.pool_pre_ping,
        echo=settings.echo,
        connect_args={"timeout": settings.connect_timeout_s, "server_settings": server_settings},
    )
    event.listen(engine.sync_engine, "checkout", _replace_if_closed)
    trace_engine(engine)
    return Database(engine, session_factory(engine))


def _replace_if_closed(
    _dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
) -> None:
    """A connection the server closed while it sat in the pool (Postgres restarted, a backend
    terminated) is known to the driver already: the pool replaces it instead of handing it
    to a request that would fail on it. No round trip, unlike a pre-ping."""
    if record.driver_connection is not None and record.driver_connection.is_closed():
        raise DisconnectionError()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: objects stay readable after commit without lazy I/O.
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def unit_of_work(db: Database) -> AsyncIterator[AsyncSession]:
    """One transaction: committed when the block ends, rolled back if it raises."""
    async with db.sessionmaker() as session, session.begin():
        yield session
