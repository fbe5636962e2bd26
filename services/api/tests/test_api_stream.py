"""The live stream over a real socket (uvicorn in this event loop, the `websockets` client):
authentication and its close codes, subscription, relay from Redis pub/sub, pings, expiry,
and a slow consumer cut off instead of growing memory."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

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
from milepost_common.live import LiveEvent, org_channel
from milepost_common.testing.factories import make_device
from services.api.tests.api_support import Bearer, Team, serving


@pytest.fixture(scope="module")
async def stream_app(settings_factory: Callable[..., ApiSettings]) -> AsyncIterator[FastAPI]:
    settings = settings_factory(
        ApiSettings,
        auth={"principal_cache_s": 0},
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


async def publish(redis: Redis, org_id: uuid.UUID, vehicle_id: uuid.UUID, **data: Any) -> None:
    event = LiveEvent(type="alert", org_id=org_id, vehicle_id=vehicle_id, data=data)
    await redis.publish(org_channel(org_id), event.model_dump_json())


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
