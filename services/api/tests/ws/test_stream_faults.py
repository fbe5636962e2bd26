"""The live stream when what it stands on fails: Postgres away while a client authenticates
or subscribes closes the stream with 1013 (try again later), as HTTP answers 503; a client
that reads nothing at all is dropped once cut off, or once it pings with 1 MiB unread, not
kept with what it did not take."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest
from asgi_lifespan import LifespanManager
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession
from websockets.asyncio.client import connect

from milepost_api.main import create_app
from milepost_api.settings import ApiSettings
from milepost_common.testing.factories import make_device
from services.api.tests.api_support import Bearer, Team, serving
from services.api.tests.ws.stream_support import (
    RawClient,
    authenticated,
    close_code,
    publish,
    receive,
)
from services.api.tests.ws.test_stream import Served, committed_team
from services.api.tests.ws.test_stream_recovery import TcpProxy, proxy_to


@pytest.fixture
async def postgres_proxy(committed_database: str) -> AsyncIterator[TcpProxy]:
    async with proxy_to(committed_database) as proxy:
        yield proxy


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


class TestClientReadingNothing:
    async def test_is_reset_once_cut_off_instead_of_held_open(
        self, address: str, session: AsyncSession, redis: Redis, team: Team, bearer: Bearer
    ) -> None:
        """Cut off (4429), a client that still reads nothing cannot take the close frame
        either: the server used to close the socket politely, which waits for the client to
        take the megabytes queued for it, so the socket and its buffers stayed for as long as
        the client liked while its seat was free for another stream. Now it is reset."""
        device = await make_device(session, team.org)
        client = RawClient(address)
        await client.open()
        try:
            await client.authenticate(bearer(team.viewer))
            await client.subscribe_all()

            blob = "x" * 256_000
            for i in range(100):
                await publish(redis, team.org.id, device.id, i=i, blob=blob)
            # Cut off after the 0.5 s send timeout, then 5 s trying to send the close frame.
            await asyncio.sleep(7)

            with pytest.raises(ConnectionResetError):
                await read_to_the_end(client)
        finally:
            client.close()

    async def test_pinging_without_reading_is_reset(
        self, address: str, team: Team, bearer: Bearer
    ) -> None:
        """Every ping is answered with a pong that the server wrote whether or not the
        client read anything: one sending pings and reading nothing grew the server's memory
        as fast as it could send (26 MB of pings: +23 MB). Past 1 MiB of unread replies it
        is reset."""
        client = RawClient(address)
        await client.open()
        try:
            await client.authenticate(bearer(team.viewer))

            with pytest.raises(ConnectionError):
                await ping_flood_then_read(client, megabytes=8)
        finally:
            client.close()


async def ping_flood_then_read(client: RawClient, *, megabytes: int) -> None:
    for _ in range(megabytes * 8):
        for _ in range(1000):
            client.protocol.send_ping(b"x" * 125)
        for data in client.protocol.data_to_send():
            client.writer.write(data)
        await client.writer.drain()
    await read_to_the_end(client)


async def read_to_the_end(client: RawClient) -> None:
    while await asyncio.wait_for(client.reader.read(1 << 20), 10):
        pass
