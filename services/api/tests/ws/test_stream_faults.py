"""The live stream when what it stands on fails: Postgres away while a client authenticates
or subscribes closes the stream with 1013 (try again later), as HTTP answers 503."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest
from asgi_lifespan import LifespanManager
from websockets.asyncio.client import connect

from milepost_api.main import create_app
from milepost_api.settings import ApiSettings
from services.api.tests.api_support import Bearer, serving
from services.api.tests.ws.stream_support import authenticated, close_code, receive
from services.api.tests.ws.test_stream import Served, committed_team
from services.api.tests.ws.test_stream_recovery import RedisProxy as TcpProxy


@pytest.fixture
async def postgres_proxy(committed_database: str) -> AsyncIterator[TcpProxy]:
    target = urlsplit(committed_database)
    assert target.hostname
    assert target.port
    proxy = TcpProxy(target.hostname, target.port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@pytest.fixture
async def proxied(
    postgres_proxy: TcpProxy,
    committed_database: str,
    settings_factory: Callable[..., ApiSettings],
) -> AsyncIterator[Served]:
    """An app whose Postgres is reached through ``postgres_proxy``."""
    parts = urlsplit(committed_database)
    netloc = f"{parts.netloc.rsplit('@', 1)[0]}@127.0.0.1:{postgres_proxy.port}"
    settings = settings_factory(ApiSettings, db={"url": urlunsplit(parts._replace(netloc=netloc))})
    app = create_app(settings)
    async with LifespanManager(app), serving(app) as served:
        yield Served(app, served)


class TestPostgresAway:
    async def test_authenticating_closes_with_1013(
        self, proxied: Served, postgres_proxy: TcpProxy, bearer: Bearer
    ) -> None:
        team = await committed_team(proxied.app)
        await postgres_proxy.stop()
        token = bearer(team.viewer)["Authorization"].removeprefix("Bearer ")

        async with connect(proxied.stream) as ws:
            await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
            assert await close_code(ws) == 1013

    async def test_subscribing_closes_with_1013(
        self, proxied: Served, postgres_proxy: TcpProxy, bearer: Bearer
    ) -> None:
        team = await committed_team(proxied.app)
        async with connect(proxied.stream) as ws:
            await authenticated(ws, bearer(team.viewer))
            subscribe = {"type": "subscribe", "vehicle_ids": [str(uuid.uuid4())]}
            await ws.send(orjson.dumps(subscribe).decode())
            assert await receive(ws) == {"type": "subscribed", "vehicle_ids": []}
            await postgres_proxy.stop()

            await ws.send(orjson.dumps(subscribe).decode())
            assert await close_code(ws) == 1013
