"""Dependencies every app uses: the request's transaction, the hot reads, Redis, settings.

All ``async def``: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop
per dependency per request for what is an attribute read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.db import Database, Reader
from milepost_common.errors import AppError
from milepost_common.settings import CommonSettings
from milepost_common.tasks import Publisher


def database_of(request: Request) -> Database:
    """The app's database (``get_database`` without the dependency's cost)."""
    db: Database = request.app.state.db
    return db


async def get_database(request: Request) -> Database:
    return database_of(request)


def reads_of(request: Request) -> Reader:
    """Where the hot reads run (``Database.reads``): one statement, no session. Called by
    the hot routes themselves, not as a dependency (that costs FastAPI a resolution per
    request)."""
    reads: Reader = request.app.state.db.reads
    return reads


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's one transaction: committed before the response is sent, else rolled back.

    Used with ``scope="function"``: the commit runs when the endpoint returns, so a client
    never holds a 201 for a row that then fails to commit.
    """
    db: Database = request.app.state.db
    async with db.sessionmaker() as session:
        try:
            yield session
        except AppError as exc:
            await (session.commit() if exc.commits else session.rollback())
            raise
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


async def get_redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


async def get_settings_dep(request: Request) -> CommonSettings:
    settings: CommonSettings = request.app.state.settings
    return settings


async def get_publisher(request: Request) -> Publisher:
    publisher: Publisher = request.app.state.publisher
    return publisher


async def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
DatabaseDep = Annotated[Database, Depends(get_database)]
RedisDep = Annotated[Redis, Depends(get_redis)]
SettingsDep = Annotated[CommonSettings, Depends(get_settings_dep)]
PublisherDep = Annotated[Publisher, Depends(get_publisher)]
ClientIpDep = Annotated[str, Depends(client_ip)]
