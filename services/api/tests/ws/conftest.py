"""Fixtures of the live stream's tests: an app with short stream intervals, served on a real
socket (uvicorn in this event loop) with the test's database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from redis.asyncio import Redis

from milepost_api.main import create_app
from milepost_api.settings import ApiSettings
from milepost_common.db import Database
from services.api.tests.api_support import serving


@pytest.fixture(scope="module")
async def stream_app(settings_factory: Callable[..., ApiSettings]) -> AsyncIterator[FastAPI]:
    # No re-check of the principal during these tests: their streams share the test's one
    # database connection (TestPrincipalRecheck has a pool of its own).
    settings = settings_factory(
        ApiSettings,
        auth={"principal_cache_s": 600},
        api={
            "stream_auth_timeout_s": 0.5,
            "stream_ping_interval_s": 0.5,
            "stream_queue_size": 4,
            "stream_send_timeout_s": 0.5,
            "stream_max_per_user": 2,
            "stream_max_per_org": 3,
        },
    )
    app = create_app(settings)
    async with LifespanManager(app):
        await app.state.db.dispose()
        yield app


@pytest.fixture
async def address(stream_app: FastAPI, database: Database, redis: Redis) -> AsyncIterator[str]:
    stream_app.state.db = database
    async with serving(stream_app) as served:
        yield f"ws://{served}/api/v1/stream"
