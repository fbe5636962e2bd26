"""Async database access: one engine per process (per prefork child in the worker).

Apps get the request's transaction from ``SessionDep`` (``web/deps.py``); workers and
scripts use :func:`unit_of_work`. Nothing else commits. The hot reads (a repository's
read-only statements on the request path) run on :class:`Reads`, outside any session.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from milepost_common.settings import DbSettings
from milepost_common.tracing import trace_engine

# Postgres' lock_not_available: a lock wait ran past ``lock_timeout``.
LOCK_NOT_AVAILABLE = "55P03"


def lock_timed_out(exc: DBAPIError) -> bool:
    """Whether the statement gave up waiting for a lock (``lock_timeout``)."""
    return getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE


class Reader(Protocol):
    """Where the hot reads run: :class:`Reads` in the apps, the test's transaction in tests."""

    async def fetch(self, statement: str, *args: object) -> list[Any]: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Database:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    reads: Reader

    async def dispose(self) -> None:
        await self.reads.close()
        await self.engine.dispose()


class Reads:
    """A plain asyncpg pool for single read-only statements (the hot reads).

    A connection is held for one statement, not for a request: a page read spends most of its
    time outside the database (authentication, JSON, the network), so a few connections
    serve many concurrent requests, which wait their turn instead of opening connections
    beyond the pool (the session pool's overflow, which under load connects and disconnects
    on every request). No session, no transaction, no reset round trip on release: the
    statements run here change no session state (asyncpg still rolls back a connection
    left in a transaction). Opened on first use, with no connection until a statement runs,
    so an app starts while Postgres is down.
    """

    def __init__(
        self,
        dsn: str,
        *,
        size: int,
        server_settings: dict[str, str],
        timeout: float,
        acquire_timeout_s: float = 5.0,
    ) -> None:
        # Waiting longer than this for a connection answers 503 (a TimeoutError).
        self._acquire_timeout_s = acquire_timeout_s
        self._options: dict[str, Any] = {
            "dsn": dsn,
            "min_size": 0,
            "max_size": size,
            "server_settings": server_settings,
            "timeout": timeout,
            "reset": _keep_session,
        }
        self._pool: Any = None
        self._opening: asyncio.Lock | None = None

    async def fetch(self, statement: str, *args: object) -> list[Any]:
        """The statement's rows (asyncpg records)."""
        pool = self._pool or await self._open()
        async with pool.acquire(timeout=self._acquire_timeout_s) as connection:
            rows: list[Any] = await connection.fetch(statement, *args)
        return rows

    async def _open(self) -> Any:
        self._opening = self._opening or asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(**self._options)
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


async def _keep_session(_connection: Any) -> None:
    """Release without ``RESET ALL``: nothing the reads run changes the session."""


async def fetch_on(connection: AsyncConnection, statement: str, *args: object) -> list[Any]:
    """A hot read's statement on the asyncpg connection under a SQLAlchemy one (inside its
    transaction, if it has begun one)."""
    raw = await connection.get_raw_connection()
    rows: list[Any] = await raw.driver_connection.fetch(statement, *args)  # type: ignore[union-attr]
    return rows


class SessionReads:
    """The hot reads inside a session's transaction (a use case that holds one already): on
    the asyncpg connection under it, which SQLAlchemy's asyncpg adapter begins lazily, on its
    own first statement."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def fetch(self, statement: str, *args: object) -> list[Any]:
        return await fetch_on(await self._session.connection(), statement, *args)

    async def close(self) -> None:
        """The session is its owner's to close."""


# Every engine of the system's: a failed statement's text names its parameters otherwise, and
# tracebacks reach the logs (and a batch's ``last_error``) with them: a receiver's URL with
# its token, an encrypted secret. The statement itself and the error stay.
ENGINE_OPTIONS: dict[str, Any] = {"hide_parameters": True}


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
        **ENGINE_OPTIONS,
    )
    event.listen(engine.sync_engine, "checkout", _replace_if_closed)
    trace_engine(engine)
    reads = Reads(
        engine.url.set(drivername="postgresql").render_as_string(hide_password=False),
        size=settings.pool_size,
        server_settings=server_settings,
        timeout=settings.connect_timeout_s,
        acquire_timeout_s=settings.pool_timeout_s,
    )
    return Database(engine, session_factory(engine), reads)


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
