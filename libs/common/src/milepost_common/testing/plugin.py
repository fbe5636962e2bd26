"""The pytest plugin every package's tests use (enabled in the root pyproject).

Postgres and Redis are real (see ``services.py`` for where they come from). Each test
process gets a database migrated with Alembic, kept as a template; each test runs in a
transaction rolled back at the end, the app's own commits becoming savepoints. Tests that
need real commits seen by other processes (workers, the stack) take ``committed_database``:
a fresh clone of the template (~0.2 s).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from redis.asyncio import Redis
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from milepost_common.auth import Realm, TokenCodec
from milepost_common.db import ENGINE_OPTIONS, Database, create_database, fetch_on, session_factory
from milepost_common.migrate import migrate
from milepost_common.settings import AuthSettings, CommonSettings, Environment
from milepost_common.testing import services

SettingsT = TypeVar("SettingsT", bound=CommonSettings)

# Position partitions the test databases get behind today (the suite's fixtures stay inside).
TEST_PARTITION_DAYS_BACK = 40
# The test settings' token key sets: each realm its own, as in every deployment.
TEST_JWT_KEYS = {"test-1": "test-signing-key-" + "x" * 32}
TEST_ADMIN_JWT_KEYS = {"test-admin-1": "test-admin-signing-key-" + "y" * 32}

hypothesis_settings.register_profile(
    "ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.register_profile("dev", max_examples=100, deadline=None)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "dev")


def _worker_id(config: pytest.Config) -> str:
    return str(getattr(config, "workerinput", {}).get("workerid", "main"))


def _asyncpg(url: str) -> str:
    return make_url(url).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def _with_db(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def _admin_execute(server_url: str, *statements: str) -> None:
    engine = create_async_engine(
        _with_db(_asyncpg(server_url), "postgres"), poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    try:
        async with engine.connect() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    with services.provide_postgres() as url:
        yield url


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    with services.provide_redis() as url:
        yield url


@pytest.fixture(scope="session")
async def template_database_url(postgres_server_url: str, request: pytest.FixtureRequest) -> str:
    """This process's migrated template database (no connection stays open on it)."""
    name = f"milepost_tpl_{_worker_id(request.config)}_{uuid.uuid4().hex[:6]}"
    await _admin_execute(postgres_server_url, f'CREATE DATABASE "{name}"')
    url = _with_db(_asyncpg(postgres_server_url), name)
    await migrate(url, partition_days_back=TEST_PARTITION_DAYS_BACK)
    return url


async def clone_database(template_url: str, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    template = make_url(template_url).database
    await _admin_execute(template_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return _with_db(template_url, name)


async def drop_database(url: str) -> None:
    name = make_url(url).database
    assert name
    assert re.fullmatch(r"[a-z0-9_]+", name)
    await _admin_execute(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
async def database_url(template_database_url: str) -> AsyncIterator[str]:
    url = await clone_database(template_database_url, "milepost_test")
    yield url
    await drop_database(url)


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_async_engine(database_url, pool_size=5, **ENGINE_OPTIONS)
    yield eng
    await eng.dispose()


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection inside a transaction that is rolled back after the test."""
    async with engine.connect() as conn:
        outer = await conn.begin()
        try:
            yield conn
        finally:
            if outer.is_active:
                await outer.rollback()


@pytest.fixture
def database(engine: AsyncEngine, connection: AsyncConnection) -> Database:
    """A Database whose sessions join the test's transaction; their commits are savepoints."""
    maker = session_factory(engine)
    maker.configure(bind=connection, join_transaction_mode="create_savepoint")
    return Database(engine, maker, TransactionReads(connection))


class TransactionReads:
    """The hot reads on the test's connection, so they see what the test wrote."""

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def fetch(self, statement: str, *args: object) -> list[Any]:
        return await fetch_on(self._connection, statement, *args)

    async def close(self) -> None:
        """The test's connection is the fixture's to close."""


@pytest.fixture
async def session(database: Database) -> AsyncIterator[AsyncSession]:
    async with database.sessionmaker() as s:
        yield s


@pytest.fixture
async def committed_database(template_database_url: str) -> AsyncIterator[str]:
    """A fresh migrated database for tests whose commits other processes must see."""
    url = await clone_database(template_database_url, "milepost_commit")
    yield url
    await drop_database(url)


@pytest.fixture
async def committed_db(
    committed_database: str, settings_factory: Callable[..., CommonSettings]
) -> AsyncIterator[Database]:
    """A ``Database`` on ``committed_database``: sessions of their own, each committing, for
    tests of what two transactions at once do."""
    database = create_database(settings_factory(CommonSettings, db={"url": committed_database}).db)
    yield database
    await database.dispose()


@pytest.fixture(scope="session")
def redis_url(redis_server_url: str, request: pytest.FixtureRequest) -> str:
    """A logical Redis DB per test process (its cache DB is the next one)."""
    worker = _worker_id(request.config)
    index = int(worker.removeprefix("gw")) if worker.startswith("gw") else 0
    return f"{redis_server_url.rstrip('/').rsplit('/', 1)[0]}/{2 + 2 * index}"


@pytest.fixture
async def redis(
    redis_url: str, settings_factory: Callable[..., CommonSettings]
) -> AsyncIterator[Redis]:
    """The cache Redis the apps use, emptied before each test; the broker DB too."""
    cache_url = settings_factory(CommonSettings).redis.cache_url
    client = Redis.from_url(cache_url)
    broker = Redis.from_url(redis_url)
    await client.flushdb()
    await broker.flushdb()
    await broker.aclose()
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def settings_factory(database_url: str, redis_url: str) -> Callable[..., Any]:
    """Build settings of any service for tests: test DB and Redis, cheap argon2."""

    def make(cls: type[SettingsT], **overrides: Any) -> SettingsT:
        index = int(redis_url.rsplit("/", 1)[1])
        values: dict[str, Any] = {
            "env": Environment.TEST,
            "db": {"url": database_url, "pool_size": 5},
            "redis": {"url": redis_url, "cache_db": index + 1},
            "auth": {
                "argon2_time_cost": 1,
                "argon2_memory_kib": 64,
                "jwt_keys": TEST_JWT_KEYS,
                "admin_jwt_keys": TEST_ADMIN_JWT_KEYS,
            },
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(values.get(key), dict):
                values[key] = {**values[key], **value}
            else:
                values[key] = value
        return cls(**values)

    return make


def token_codec() -> TokenCodec:
    """Mints and verifies tokens of both realms as the apps do under the test settings (an api
    token with the api's keys, an admin token with admin's): for tests that hand one app a
    token of the other's realm, which that app's own settings cannot make."""
    auth = AuthSettings.model_validate(
        {"jwt_keys": TEST_JWT_KEYS, "admin_jwt_keys": TEST_ADMIN_JWT_KEYS}
    )
    return TokenCodec(auth, Realm.API, Realm.ADMIN)


@asynccontextmanager
async def app_client(
    app: FastAPI, database: Database | None = None, base_url: str = "http://testserver"
) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and talk to it in-process; ``database`` replaces its own."""
    async with LifespanManager(app) as manager:
        own = app.state.db
        if database is not None:
            app.state.db = database
        try:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
                yield client
        finally:
            # The lifespan disposes what it created, never the test's shared engine.
            app.state.db = own
