"""One Redis pub/sub connection per api process, shared by every live-stream client.

A client joins with a callback for its organization; the hub subscribes the organization's
channel while at least one local client of it is connected and hands each event to all of
them. Callbacks must not block: a client that cannot keep up is cut off by its own session
(its queue is bounded), never by slowing the others down.

When the connection breaks (Redis restarted, connection killed, or silent: no answer to a
PING sent after a ping interval without a message) the hub reconnects with backoff and
subscribes every channel still wanted; clients stay connected and miss the events published
meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import FastAPI
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from milepost_api.liveness import QuietWatch
from milepost_api.settings import ApiSettings
from milepost_common.live import LiveEvent, org_channel
from milepost_common.logging import get_logger

log = get_logger("milepost.api.stream")

# Called with an event's vehicle id and the message to send as is; runs in the hub's task.
Deliver = Callable[[uuid.UUID, bytes], None]

READ_TIMEOUT_S = 1.0
RETRY_FIRST_S = 0.1
RETRY_MAX_S = 5.0


class OpenStreams:
    """The streams each user, and each organization, holds open in this process, at most
    ``limit`` a user and ``org_limit`` an organization at once: a client that opens streams
    in a loop (a bug, or worse) cannot fill the process with connections that each hold
    tasks, a queue and a re-check of their principal, and every event of an organization is
    handed to each of its streams here, in the loop every tenant of the process shares."""

    def __init__(self, limit: int, org_limit: int) -> None:
        self.limit = limit
        self.org_limit = org_limit
        self._held: Counter[uuid.UUID] = Counter()
        self._held_by_org: Counter[uuid.UUID] = Counter()

    def take(self, user_id: uuid.UUID, org_id: uuid.UUID) -> str | None:
        """A seat for one more stream of the user and its organization: None when taken,
        else why not."""
        if self._held[user_id] >= self.limit:
            return f"At most {self.limit} open streams per user."
        if self._held_by_org[org_id] >= self.org_limit:
            return f"At most {self.org_limit} open streams per organization."
        self._held[user_id] += 1
        self._held_by_org[org_id] += 1
        return None

    def give_back(self, user_id: uuid.UUID, org_id: uuid.UUID) -> None:
        for held, key in ((self._held, user_id), (self._held_by_org, org_id)):
            held[key] -= 1
            if held[key] <= 0:
                del held[key]


class StreamHub:
    """Reference-counted organization subscriptions over one pub/sub connection."""

    def __init__(self, url: str, timeout_s: float, ping_interval_s: float) -> None:
        # Named so `CLIENT LIST` tells which process holds which connection.
        self.client_name = f"milepost-api-stream:{socket.gethostname()}:{os.getpid()}"
        self._redis = Redis.from_url(
            url,
            client_name=self.client_name,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=30,
            # No silent reconnects inside redis-py: _run rebuilds the connection, under _lock.
            retry=Retry(NoBackoff(), 0, supported_errors=()),
        )
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        self._timeout_s = timeout_s
        self._ping_interval_s = ping_interval_s
        self._clients: dict[uuid.UUID, set[Deliver]] = {}
        self._subscribed: set[uuid.UUID] = set()
        # One (un)subscribe or reconnect at a time, each deciding from the state it finds.
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._broken = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="stream-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
            self._task = None
        async with self._lock:
            await self._pubsub.aclose()
        await self._redis.aclose()

    async def join(self, org_id: uuid.UUID, deliver: Deliver) -> None:
        """Hands ``deliver`` every event of the organization until ``leave``. Never raises
        for Redis: while it is away the client just receives nothing."""
        self._clients.setdefault(org_id, set()).add(deliver)
        await self._sync(org_id)

    async def leave(self, org_id: uuid.UUID, deliver: Deliver) -> None:
        clients = self._clients.get(org_id, set())
        clients.discard(deliver)
        if not clients:
            self._clients.pop(org_id, None)
        await self._sync(org_id)

    async def _sync(self, org_id: uuid.UUID) -> None:
        """Subscribes or unsubscribes the organization's channel to match its clients."""
        async with self._lock:
            wanted = org_id in self._clients
            # Stopped, reconnecting (which subscribes what is wanted then), or nothing to do.
            if self._task is None or self._broken or wanted == (org_id in self._subscribed):
                return
            channel = org_channel(org_id)
            try:
                if wanted:
                    await self._pubsub.subscribe(channel)
                    self._subscribed.add(org_id)
                else:
                    await self._pubsub.unsubscribe(channel)
                    self._subscribed.discard(org_id)
            except (RedisError, OSError):
                self._broken = True  # the connection's state is unknown: _run rebuilds it
            except BaseException:
                self._broken = True  # cancelled mid-command: the same
                raise
            finally:
                self._wake.set()

    async def _run(self) -> None:
        delay = RETRY_FIRST_S
        while True:
            try:
                await self._resubscribe()
                delay = RETRY_FIRST_S
                await self._relay()
                error = "a subscribe or unsubscribe failed"
            except Exception as exc:  # noqa: BLE001 - whatever broke, a new connection mends
                error = repr(exc)
            self._broken = True
            log.warning("stream_hub_disconnected", error=error, retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(2 * delay, RETRY_MAX_S)

    async def _resubscribe(self) -> None:
        """A new connection subscribed to every channel a local client needs now."""
        async with self._lock:
            await self._pubsub.aclose()  # also forgets redis-py's own list of channels
            self._subscribed.clear()
            wanted = set(self._clients)
            if wanted:
                await self._pubsub.subscribe(*(org_channel(org_id) for org_id in wanted))
            self._subscribed = wanted
            if self._broken:
                log.info("stream_hub_reconnected", channels=len(wanted))
            self._broken = False

    async def _relay(self) -> None:
        """Reads and fans out messages; returns when a subscribe or unsubscribe failed, and
        raises when the connection went silent: quiet for the clients' ping interval, then no
        PONG within the socket timeout (``milepost_api.liveness``)."""
        watch = QuietWatch(self._ping_interval_s, self._timeout_s)
        while not self._broken:
            if not self._pubsub.subscribed:
                # Idle without channels: redis-py reads a PING reply itself before the first
                # SUBSCRIBE on an idle connection, which must not race a read here.
                self._wake.clear()
                await self._wake.wait()
                watch = QuietWatch(self._ping_interval_s, self._timeout_s)
                continue
            message = await self._pubsub.get_message(timeout=READ_TIMEOUT_S)
            if message is not None:
                watch.heard(pong=message["type"] == "pong")
                if message["type"] != "pong":
                    self._fan_out(message)
                # A batch's events come in one pipeline and are read without a pause: the
                # clients' send loops take each before the next, or a burst longer than a
                # client's queue would cut off one that reads as fast as it can.
                await asyncio.sleep(0)
            elif watch.ping_due():
                async with self._lock:
                    await self._pubsub.ping()

    def _fan_out(self, message: dict[str, Any]) -> None:
        try:
            event = LiveEvent.model_validate_json(message["data"])
        except ValidationError:
            log.warning("live_event_invalid")
            return
        # An event counts only on its own organization's channel: no cross-tenant relay.
        if message["channel"] != org_channel(event.org_id).encode():
            log.warning("live_event_invalid")
            return
        clients = self._clients.get(event.org_id)
        if not clients:
            return
        frame = orjson.dumps({"type": event.type, "data": event.data}, option=orjson.OPT_UTC_Z)
        for deliver in clients:
            deliver(event.vehicle_id, frame)


async def start_stream_hub(app: FastAPI) -> None:
    settings: ApiSettings = app.state.settings
    # Redis is pinged as often as the clients are, when it has been silent that long.
    hub = StreamHub(
        settings.redis.cache_url,
        settings.redis.socket_timeout_s,
        settings.api.stream_ping_interval_s,
    )
    hub.start()
    app.state.stream_hub = hub
    app.state.open_streams = OpenStreams(
        settings.api.stream_max_per_user, settings.api.stream_max_per_org
    )


async def stop_stream_hub(app: FastAPI) -> None:
    hub: StreamHub = app.state.stream_hub
    await hub.stop()
