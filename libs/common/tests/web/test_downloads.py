"""A download holds one of its process's turns until it ends, however it ends: one whose
request fails after the turn was taken (its transaction cannot commit) gives it back too, or
a few such failures would answer every later download with 503 until a restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from sqlalchemy import text

from milepost_common.settings import CommonSettings, HttpSettings
from milepost_common.testing.plugin import app_client
from milepost_common.web.app import AppSpec, create_base_app
from milepost_common.web.deps import SessionDep
from milepost_common.web.downloads import Download, Turns, download

router = APIRouter(prefix="/v1")
turns = Turns()


async def rows() -> AsyncIterator[bytes]:
    yield b"a,b\n"
    yield b"1,2\n"


@router.get("/export", response_model=None)
async def export(session: SessionDep, lose_connection: bool = False) -> Download:
    if lose_connection:
        # Postgres ends the connection before the request's commit (a restart, a failover).
        await session.execute(text("SET LOCAL idle_in_transaction_session_timeout = 1"))
        await asyncio.sleep(0.3)
    return download(
        rows(), turns=turns, at_once=1, send_timeout_s=5, media_type="text/csv", filename="x.csv"
    )


def build_app(settings: CommonSettings) -> FastAPI:
    spec = AppSpec(
        name="kit", title="kit test app", description="", routers=(router,), http=HttpSettings()
    )
    return create_base_app(settings, spec)


@pytest.fixture
async def real_client(
    settings_factory: Callable[..., CommonSettings], committed_database: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_factory(CommonSettings, db={"url": committed_database})
    async with app_client(build_app(settings)) as client:
        yield client


async def test_a_download_whose_request_fails_to_commit_gives_its_turn_back(
    real_client: httpx.AsyncClient,
) -> None:
    failed = await real_client.get("/kit/v1/export", params={"lose_connection": "true"})
    after = await real_client.get("/kit/v1/export")

    assert failed.status_code == 503  # the database was lost: retry later
    assert after.status_code == 200, after.text
    assert after.text == "a,b\n1,2\n"
    assert turns.taken == 0
