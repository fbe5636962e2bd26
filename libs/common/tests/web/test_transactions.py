"""SessionDep commits before the response is sent; errors roll back unless they must commit."""

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from milepost_common.settings import CommonSettings
from milepost_common.testing.plugin import app_client


@pytest.fixture
async def committed_engine(committed_database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(committed_database)
    yield engine
    await engine.dispose()


@pytest.fixture
async def real_client(
    settings_factory: Callable[..., CommonSettings],
    committed_database: str,
    kit_app_factory: Callable[..., FastAPI],
) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_factory(CommonSettings, db={"url": committed_database})
    async with app_client(kit_app_factory(settings)) as client:
        yield client


async def count_orgs(engine: AsyncEngine, name: str) -> int:
    async with engine.connect() as conn:
        result = await conn.scalar(
            text("SELECT count(*) FROM organizations WHERE name = :n"), {"n": name}
        )
        return int(result or 0)


async def test_row_is_committed_when_the_client_gets_201(
    real_client: httpx.AsyncClient, committed_engine: AsyncEngine
) -> None:
    response = await real_client.post("/kit/v1/orgs", json={"name": "Acme"})
    assert response.status_code == 201
    # Another connection sees it the moment the answer arrived.
    assert await count_orgs(committed_engine, "Acme") == 1


async def test_error_rolls_back(
    real_client: httpx.AsyncClient, committed_engine: AsyncEngine
) -> None:
    response = await real_client.post("/kit/v1/orgs-then-fail", json={"name": "Ghost"})
    assert response.status_code == 409
    assert await count_orgs(committed_engine, "Ghost") == 0


async def test_error_that_commits_keeps_its_writes(
    real_client: httpx.AsyncClient, committed_engine: AsyncEngine
) -> None:
    response = await real_client.post("/kit/v1/orgs-then-fail-keeping", json={"name": "Kept"})
    assert response.status_code == 409
    assert await count_orgs(committed_engine, "Kept") == 1


async def test_database_down_answers_503(
    settings_factory: Callable[..., CommonSettings], kit_app_factory: Callable[..., FastAPI]
) -> None:
    settings = settings_factory(
        CommonSettings, db={"url": "postgresql://nobody@127.0.0.1:1/none", "connect_timeout_s": 1}
    )
    async with app_client(kit_app_factory(settings)) as client:
        response = await client.post("/kit/v1/orgs", json={"name": "Down"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"
    assert "Retry-After" in response.headers
