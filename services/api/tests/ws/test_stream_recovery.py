"""The live stream's shared Redis subscription recovers when Redis goes away: a killed
connection is replaced, and clients stay connected through an outage."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_api.main import create_app
from milepost_api.settings import ApiSettings
from milepost_common.db import Database
from milepost_common.testing.factories import make_device
from services.api.tests.api_support import Bearer, Team, serving
from services.api.tests.ws.stream_support import (
    eventually,
    hub_connections,
    publish,
    receive,
    subscribers,
    watching,
)


class TestRedisRecovery:
    async def test_the_hub_resubscribes_after_its_connection_is_killed(
        self,
        stream_app: FastAPI,
        address: str,
        session: AsyncSession,
        redis: Redis,
        team: Team,
        bearer: Bearer,
    ) -> None:
        device = await make_device(session, team.org)
        async with watching(address, bearer(team.viewer)) as ws:
            [killed] = await hub_connections(redis, stream_app)
            # Only this app's connection: others may share this Redis.
            await redis.client_kill_filter(_id=killed["id"], _type="pubsub")

            async def resubscribed() -> bool:
                current = await hub_connections(redis, stream_app)
                return [c["id"] for c in current] not in ([], [killed["id"]]) and (
                    await subscribers(redis, team.org.id) == 1
                )

            await eventually(resubscribed)
            await publish(redis, team.org.id, device.id, n=1)
            assert await receive(ws) == {"type": "alert", "data": {"n": 1}}

    async def test_clients_stay_connected_through_a_redis_outage(
        self,
        proxied_address: str,
        redis_proxy: TcpProxy,
        session: AsyncSession,
        redis: Redis,
        team: Team,
        bearer: Bearer,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.INFO, logger="milepost.api.stream")
        device = await make_device(session, team.org)
        async with watching(proxied_address, bearer(team.viewer)) as ws:
            await publish(redis, team.org.id, device.id, n=1)
            assert await receive(ws) == {"type": "alert", "data": {"n": 1}}

            await redis_proxy.stop()
            await publish(redis, team.org.id, device.id, n=2)  # missed: nobody listens
            await asyncio.sleep(1)  # a few refused reconnects
            assert await receive(ws, pings=True) == {"type": "ping"}  # still connected
            await redis_proxy.start()

            async def resubscribed() -> bool:
                return await subscribers(redis, team.org.id) == 1

            await eventually(resubscribed)
            await publish(redis, team.org.id, device.id, n=3)
            assert await receive(ws) == {"type": "alert", "data": {"n": 3}}

        logged = [r.msg for r in caplog.records if isinstance(r.msg, dict)]
        retries = [e["retry_in_s"] for e in logged if e["event"] == "stream_hub_disconnected"]
        assert len(retries) >= 3
        assert retries == sorted(retries)  # backing off
        assert any(e["event"] == "stream_hub_reconnected" for e in logged)

    async def test_a_connection_gone_silent_is_replaced(
        self,
        proxied_address: str,
        redis_proxy: TcpProxy,
        session: AsyncSession,
        redis: Redis,
        team: Team,
        bearer: Bearer,
    ) -> None:
        """A connection whose peer vanished without closing it reads like a quiet channel,
        and TCP alone notices it after ~15 minutes: the hub pings Redis when it has heard
        nothing for a ping interval and reconnects when no answer comes in time."""
        device = await make_device(session, team.org)
        async with watching(proxied_address, bearer(team.viewer)) as ws:
            redis_proxy.silence()

            async def delivered() -> bool:
                await publish(redis, team.org.id, device.id, n=1)
                try:
                    return await receive(ws, within_s=0.5) == {
                        "type": "alert",
                        "data": {"n": 1},
                    }
                except TimeoutError:
                    return False

            # A ping interval (0.5 s) and Redis's socket timeout (2 s) without an answer.
            await eventually(delivered, timeout_s=15)


@asynccontextmanager
async def proxy_to(url: str) -> AsyncIterator[TcpProxy]:
    """A running relay to the host and port of ``url``, stopped afterwards."""
    target = urlsplit(url)
    assert target.hostname
    assert target.port
    proxy = TcpProxy(target.hostname, target.port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@pytest.fixture
async def redis_proxy(redis_url: str) -> AsyncIterator[TcpProxy]:
    async with proxy_to(redis_url) as proxy:
        yield proxy


@pytest.fixture
async def proxied_address(
    redis_proxy: TcpProxy,
    redis_url: str,
    settings_factory: Callable[..., ApiSettings],
    database: Database,
) -> AsyncIterator[str]:
    """The stream of an app whose Redis is reached through ``redis_proxy``."""
    url = urlunsplit(urlsplit(redis_url)._replace(netloc=f"127.0.0.1:{redis_proxy.port}"))
    settings = settings_factory(
        ApiSettings,
        redis={"url": url},
        auth={"principal_cache_s": 600},
        api={"stream_ping_interval_s": 0.5},
    )
    app = create_app(settings)
    async with LifespanManager(app):
        own = app.state.db
        await own.dispose()
        app.state.db = database
        try:
            async with serving(app) as served:
                yield f"ws://{served}/api/v1/stream"
        finally:
            app.state.db = own


class TcpProxy:
    """A TCP relay to a test server (Redis, Postgres) that a test takes down (connections
    dropped, the port refusing) and brings back on the same port: a restart as the app sees
    it, without disturbing the server other tests share."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._relays: set[asyncio.Task[Any]] = set()
        self._silenced: list[asyncio.Event] = []  # one per relay: set, it drops everything

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in self._relays:
            task.cancel()
        await asyncio.gather(*self._relays, return_exceptions=True)

    def silence(self) -> None:
        """Every open connection stays open and carries nothing more, either way: the peer
        lost without a close (a host gone, a NAT entry dropped). New connections work."""
        for silenced in self._silenced:
            silenced.set()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        silenced = asyncio.Event()
        self._silenced.append(silenced)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
            try:
                await asyncio.gather(
                    _pump(reader, upstream_writer, silenced),
                    _pump(upstream_reader, writer, silenced),
                )
            finally:
                upstream_writer.close()
        finally:
            writer.close()
            self._relays.discard(task)


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, silenced: asyncio.Event
) -> None:
    while data := await reader.read(1 << 16):
        if not silenced.is_set():
            writer.write(data)
            await writer.drain()
    writer.close()
