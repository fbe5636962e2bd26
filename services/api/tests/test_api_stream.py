"""The live stream over a real socket (uvicorn in this event loop, the `websockets` client):
authentication and its close codes, subscription, relay from Redis pub/sub, pings, expiry,
and a slow consumer cut off instead of growing memory; the process's one shared Redis
subscription per organization, and its recovery when Redis goes away."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from milepost_api.main import create_app
from milepost_api.settings import ApiSettings
from milepost_common.db import Database
from milepost_common.domain.organizations import service as organization_service
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.principals import SYSTEM
from milepost_common.domain.users.models import OrgRole
from milepost_common.live import LiveEvent, LiveEventType, org_channel
from milepost_common.testing.factories import make_device, make_organization, make_user
from services.api.tests.api_support import Bearer, Team, serving


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


async def receive(ws: ClientConnection, *, pings: bool = False) -> dict[str, Any]:
    while True:
        message = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
        if pings or message["type"] != "ping":
            return dict(message)


async def close_code(ws: ClientConnection) -> int | None:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


async def authenticated(ws: ClientConnection, headers: dict[str, str]) -> None:
    token = headers["Authorization"].removeprefix("Bearer ")
    await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
    assert await receive(ws) == {"type": "ready"}


async def publish(
    redis: Redis,
    org_id: uuid.UUID,
    vehicle_id: uuid.UUID,
    kind: LiveEventType = "alert",
    **data: Any,
) -> None:
    event = LiveEvent(type=kind, org_id=org_id, vehicle_id=vehicle_id, data=data)
    await redis.publish(org_channel(org_id), event.model_dump_json())


@asynccontextmanager
async def watching(
    address: str, headers: dict[str, str], vehicle_ids: list[str] | str = "all"
) -> AsyncIterator[ClientConnection]:
    """A client authenticated and subscribed to ``vehicle_ids``."""
    async with connect(address) as ws:
        await authenticated(ws, headers)
        await ws.send(orjson.dumps({"type": "subscribe", "vehicle_ids": vehicle_ids}).decode())
        assert (await receive(ws))["type"] == "subscribed"
        yield ws


async def subscribers(redis: Redis, org_id: uuid.UUID) -> int:
    """How many Redis connections are subscribed to the organization's channel."""
    [(_, count)] = await redis.pubsub_numsub(org_channel(org_id))
    return int(count)


async def hub_connections(redis: Redis, app: FastAPI) -> list[dict[str, str]]:
    """The app's pub/sub connections, as Redis lists them (``CLIENT LIST TYPE pubsub``)."""
    name = app.state.stream_hub.client_name
    return [c for c in await redis.client_list(_type="pubsub") if c["name"] == name]


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 10) -> None:
    async with asyncio.timeout(timeout_s):
        while not await check():  # noqa: ASYNC110 - Redis offers no event for this
            await asyncio.sleep(0.05)


class TestAuthentication:
    async def test_no_auth_in_time_closes_4408(self, address: str) -> None:
        async with connect(address) as ws:
            assert await close_code(ws) == 4408

    async def test_bad_token_closes_4401(self, address: str) -> None:
        async with connect(address) as ws:
            await ws.send('{"type": "auth", "token": "nope"}')
            assert await close_code(ws) == 4401

    async def test_expired_token_closes_4401(
        self, address: str, team: Team, bearer: Bearer
    ) -> None:
        async with connect(address) as ws:
            await ws.send(
                orjson.dumps(
                    {"type": "auth", "token": bearer(team.viewer, ttl_s=-5)["Authorization"][7:]}
                ).decode()
            )
            assert await close_code(ws) == 4401

    async def test_the_stream_closes_when_the_token_expires(
        self, address: str, team: Team, bearer: Bearer
    ) -> None:
        async with connect(address) as ws:
            await authenticated(ws, bearer(team.viewer, ttl_s=2))
            assert await close_code(ws) == 4401


class TestRelay:
    async def test_subscribed_alerts_arrive_and_others_do_not(
        self,
        address: str,
        session: AsyncSession,
        redis: Redis,
        team: Team,
        other_team: Team,
        bearer: Bearer,
    ) -> None:
        mine = await make_device(session, team.org)
        unwatched = await make_device(session, team.org)
        theirs = await make_device(session, other_team.org)
        async with connect(address) as ws:
            await authenticated(ws, bearer(team.viewer))
            await ws.send(
                orjson.dumps(
                    {"type": "subscribe", "vehicle_ids": [str(mine.id), str(theirs.id)]}
                ).decode()
            )
            assert await receive(ws) == {"type": "subscribed", "vehicle_ids": [str(mine.id)]}

            await publish(redis, other_team.org.id, theirs.id, n=1)
            await publish(redis, team.org.id, unwatched.id, n=2)
            await publish(redis, team.org.id, mine.id, n=3, rule="overspeed")

            assert await receive(ws) == {"type": "alert", "data": {"n": 3, "rule": "overspeed"}}

    async def test_pings_every_interval(self, address: str, team: Team, bearer: Bearer) -> None:
        async with connect(address) as ws:
            await authenticated(ws, bearer(team.viewer))
            assert await receive(ws, pings=True) == {"type": "ping"}

    async def test_slow_consumer_is_cut_off_with_4429(
        self, address: str, session: AsyncSession, redis: Redis, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org)
        client = RawClient(address)
        await client.open()
        try:
            token = bearer(team.viewer)["Authorization"].removeprefix("Bearer ")
            client.send({"type": "auth", "token": token})
            assert await client.next_text() == {"type": "ready"}
            client.send({"type": "subscribe", "vehicle_ids": "all"})
            assert (await client.next_text())["type"] == "subscribed"

            # The client stops reading: the kernel buffers fill, then the server's sends
            # block; its per-connection queue holds 4 messages and one send may take 0.5 s.
            blob = "x" * 256_000
            for i in range(100):
                await publish(redis, team.org.id, device.id, i=i, blob=blob)
            await asyncio.sleep(2)

            assert await client.close_code() == 4429
        finally:
            client.close()


@dataclass(frozen=True)
class Served:
    app: FastAPI
    base: str  # host:port

    @property
    def stream(self) -> str:
        return f"ws://{self.base}/api/v1/stream"


@pytest.fixture
async def recheck_served(
    settings_factory: Callable[..., ApiSettings], committed_database: str, redis: Redis
) -> AsyncIterator[Served]:
    """An app with its own pool (its streams re-check the principal every second)."""
    settings = settings_factory(
        ApiSettings,
        db={"url": committed_database},
        auth={"principal_cache_s": 1},
        api={"stream_ping_interval_s": 60},
    )
    app = create_app(settings)
    async with LifespanManager(app), serving(app) as served:
        yield Served(app, served)


async def committed_team(app: FastAPI) -> Team:
    async with app.state.db.sessionmaker() as session:
        org = await make_organization(session)
        team = Team(
            org,
            await make_user(session, org, role=OrgRole.OWNER),
            await make_user(session, org, role=OrgRole.MANAGER),
            await make_user(session, org, role=OrgRole.VIEWER),
        )
        await session.commit()
    return team


async def closed_within(ws: ClientConnection, seconds: float) -> int | None:
    async with asyncio.timeout(seconds):
        return await close_code(ws)


class TestPrincipalRecheck:
    async def test_deactivating_the_user_closes_the_stream_with_4401(
        self, recheck_served: Served, bearer: Bearer
    ) -> None:
        team = await committed_team(recheck_served.app)
        async with watching(recheck_served.stream, bearer(team.viewer)) as ws:
            async with httpx.AsyncClient(base_url=f"http://{recheck_served.base}") as http:
                deactivated = await http.post(
                    f"/api/v1/users/{team.viewer.id}/deactivate", headers=bearer(team.owner)
                )
            assert deactivated.status_code == 200

            assert await closed_within(ws, 5) == 4401

    async def test_suspending_the_organization_closes_the_stream_with_4401(
        self, recheck_served: Served, bearer: Bearer
    ) -> None:
        team = await committed_team(recheck_served.app)
        async with watching(recheck_served.stream, bearer(team.viewer)) as ws:
            async with recheck_served.app.state.db.sessionmaker() as session:
                org = await session.get(Organization, team.org.id)
                assert org is not None
                await organization_service.suspend_organization(session, SYSTEM, org)
                await session.commit()

            assert await closed_within(ws, 5) == 4401

    async def test_an_active_principal_keeps_its_stream(
        self, recheck_served: Served, bearer: Bearer
    ) -> None:
        team = await committed_team(recheck_served.app)
        async with watching(recheck_served.stream, bearer(team.viewer)) as ws:
            await asyncio.sleep(1.5)  # a re-check

            assert ws.state is State.OPEN


class TestSharedSubscription:
    async def test_clients_of_an_organization_share_one_redis_subscription(
        self,
        stream_app: FastAPI,
        address: str,
        session: AsyncSession,
        redis: Redis,
        team: Team,
        other_team: Team,
        bearer: Bearer,
    ) -> None:
        device = await make_device(session, team.org)
        theirs = await make_device(session, other_team.org)
        async with (
            watching(address, bearer(team.viewer)) as first,
            watching(address, bearer(team.manager)) as second,
            watching(address, bearer(other_team.viewer)) as outsider,
        ):
            assert await subscribers(redis, team.org.id) == 1
            assert await subscribers(redis, other_team.org.id) == 1
            assert len(await hub_connections(redis, stream_app)) == 1

            await publish(redis, team.org.id, device.id, "position", n=1)
            await publish(redis, other_team.org.id, theirs.id, n=2)

            expected = {"type": "position", "data": {"n": 1}}
            assert await receive(first) == expected
            assert await receive(second) == expected
            # Published after the other organization's position: its client got only this.
            assert await receive(outsider) == {"type": "alert", "data": {"n": 2}}

    async def test_the_channel_is_unsubscribed_when_the_last_client_leaves(
        self, address: str, session: AsyncSession, redis: Redis, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org)
        async with watching(address, bearer(team.viewer)) as staying:
            async with watching(address, bearer(team.manager)):
                assert await subscribers(redis, team.org.id) == 1
            await publish(redis, team.org.id, device.id, n=1)
            assert await receive(staying) == {"type": "alert", "data": {"n": 1}}
            assert await subscribers(redis, team.org.id) == 1

        async def unsubscribed() -> bool:
            return await subscribers(redis, team.org.id) == 0

        await eventually(unsubscribed)

    async def test_a_slow_consumer_is_cut_off_while_the_others_keep_receiving(
        self, address: str, session: AsyncSession, redis: Redis, team: Team, bearer: Bearer
    ) -> None:
        flooded = await make_device(session, team.org)
        quiet = await make_device(session, team.org)
        client = RawClient(address)
        await client.open()
        try:
            token = bearer(team.viewer)["Authorization"].removeprefix("Bearer ")
            client.send({"type": "auth", "token": token})
            assert await client.next_text() == {"type": "ready"}
            client.send({"type": "subscribe", "vehicle_ids": "all"})
            assert (await client.next_text())["type"] == "subscribed"

            async with watching(address, bearer(team.manager), [str(quiet.id)]) as other:
                blob = "x" * 256_000
                for i in range(100):
                    await publish(redis, team.org.id, flooded.id, i=i, blob=blob)
                await asyncio.sleep(2)
                assert await client.close_code() == 4429

                await publish(redis, team.org.id, quiet.id, n=1)
                assert await receive(other) == {"type": "alert", "data": {"n": 1}}
                assert await subscribers(redis, team.org.id) == 1
        finally:
            client.close()


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
        redis_proxy: RedisProxy,
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


@pytest.fixture
async def redis_proxy(redis_url: str) -> AsyncIterator[RedisProxy]:
    target = urlsplit(redis_url)
    assert target.hostname
    assert target.port
    proxy = RedisProxy(target.hostname, target.port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@pytest.fixture
async def proxied_address(
    redis_proxy: RedisProxy,
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


class RedisProxy:
    """A TCP relay to the test Redis that a test takes down (connections dropped, the port
    refusing) and brings back on the same port: a Redis restart as the app sees it, without
    disturbing the Redis other tests share."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._relays: set[asyncio.Task[Any]] = set()

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

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
            try:
                await asyncio.gather(_pump(reader, upstream_writer), _pump(upstream_reader, writer))
            finally:
                upstream_writer.close()
        finally:
            writer.close()
            self._relays.discard(task)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1 << 16):
        writer.write(data)
        await writer.drain()
    writer.close()


class RawClient:
    """A WebSocket client whose reading the test controls (a library client in this event
    loop keeps draining the socket): sans-I/O protocol over a socket with a small receive
    buffer, read only when the test asks."""

    def __init__(self, address: str) -> None:
        self.protocol = ClientProtocol(parse_uri(address), max_size=None)
        self.address = address

    async def open(self) -> None:
        host, port = self.address.removeprefix("ws://").split("/", 1)[0].split(":")
        sock = socket.socket()
        # Small, fixed (no autotuning): the kernel must not absorb megabytes for the client.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        self.reader, self.writer = await asyncio.open_connection(sock=sock)
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        while self.protocol.state is not State.OPEN:
            data = await asyncio.wait_for(self.reader.read(1 << 16), 10)
            assert data, "closed during the handshake"
            self.protocol.receive_data(data)
            self.protocol.events_received()

    def close(self) -> None:
        self.writer.close()

    def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.writer.write(data)

    def send(self, message: dict[str, Any]) -> None:
        self.protocol.send_text(orjson.dumps(message))
        self._flush()

    async def _frames(self) -> AsyncIterator[Frame]:
        while True:
            data = await asyncio.wait_for(self.reader.read(1 << 20), 10)
            if data:
                self.protocol.receive_data(data)
            else:
                self.protocol.receive_eof()
            for event in self.protocol.events_received():
                if isinstance(event, Frame):
                    yield event
            self._flush()
            if not data:
                return

    async def next_text(self) -> dict[str, Any]:
        async for frame in self._frames():
            if frame.opcode is Opcode.TEXT:
                message = orjson.loads(frame.data)
                if message["type"] != "ping":
                    return dict(message)
        raise AssertionError("closed before a message")

    async def close_code(self) -> int | None:
        async for frame in self._frames():
            if frame.opcode is Opcode.CLOSE:
                return Close.parse(frame.data).code
        return None
