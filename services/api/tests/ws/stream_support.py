"""What the live stream's tests do with a client (the `websockets` client) and with Redis."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from milepost_common.live import LiveEvent, LiveEventType, org_channel


async def receive(
    ws: ClientConnection, *, pings: bool = False, within_s: float = 5
) -> dict[str, Any]:
    """The next message, pings skipped unless asked for, within ``within_s`` in all (else
    TimeoutError). One deadline around plain reads: on Python 3.11.2 (Debian's, as CI runs)
    a ``wait_for`` cancelling a call that is itself in a ``wait_for`` loses the cancellation
    when the inner wait ends at that moment (a ping arriving on the deadline), and then
    waits for the whole stream."""
    async with asyncio.timeout(within_s):
        while True:
            message = orjson.loads(await ws.recv())
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

    async def authenticate(self, headers: dict[str, str]) -> None:
        """Send the ``auth`` message of ``headers``' bearer token and expect ``ready``."""
        self.send({"type": "auth", "token": headers["Authorization"].removeprefix("Bearer ")})
        assert await self.next_text() == {"type": "ready"}

    async def subscribe_all(self) -> None:
        self.send({"type": "subscribe", "vehicle_ids": "all"})
        assert (await self.next_text())["type"] == "subscribed"

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
