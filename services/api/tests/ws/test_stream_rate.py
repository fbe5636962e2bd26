"""Messages that make the server work (``subscribe``, a renewed ``auth``) count against the
user's api rate limit, as HTTP requests do: a stream is no way around it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import orjson
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from redis.asyncio import Redis
from websockets.asyncio.client import connect

from milepost_api.main import create_app
from milepost_api.settings import ApiSettings
from milepost_common.db import Database
from services.api.tests.api_support import Bearer, Team, serving
from services.api.tests.ws.stream_support import authenticated, receive


@pytest.fixture
async def limited_address(
    settings_factory: Callable[..., ApiSettings], database: Database, redis: Redis
) -> AsyncIterator[str]:
    settings = settings_factory(
        ApiSettings,
        auth={"principal_cache_s": 600},
        api={"rate_limit": "3/minute", "stream_ping_interval_s": 0.5},
    )
    app: FastAPI = create_app(settings)
    async with LifespanManager(app):
        own = app.state.db
        await own.dispose()
        app.state.db = database
        try:
            async with serving(app) as served:
                yield f"ws://{served}/api/v1/stream"
        finally:
            app.state.db = own


async def test_subscribes_over_the_rate_limit_are_refused_with_an_error(
    limited_address: str, team: Team, bearer: Bearer
) -> None:
    """Each subscription to 10,000 ids costs the process ~0.1 s: unlimited, one member's
    loop of them slowed every tenant's requests on that process."""
    headers = bearer(team.viewer)
    token = headers["Authorization"].removeprefix("Bearer ")
    subscribe = orjson.dumps({"type": "subscribe", "vehicle_ids": [str(uuid.uuid4())]}).decode()
    async with connect(limited_address) as ws:
        await authenticated(ws, headers)
        await ws.send(subscribe)
        assert await receive(ws) == {"type": "subscribed", "vehicle_ids": []}
        await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
        await ws.send(subscribe)
        assert await receive(ws) == {"type": "subscribed", "vehicle_ids": []}

        await ws.send(subscribe)
        refused = await receive(ws)
        assert refused["type"] == "error"
        assert refused["message"].startswith("Too many messages")
        assert await receive(ws, pings=True) == {"type": "ping"}  # still open
