"""The live stream (``WebSocket /api/v1/stream``): positions and alerts of the caller's
organization, relayed from Redis pub/sub.

Protocol (DESIGN.md "Live stream"): the first message, within 5 s, is ``{"type": "auth",
"token": ...}`` (else close 4408; a bad or expired token closes 4401); the server answers
``{"type": "ready"}``; ``{"type": "subscribe", "vehicle_ids": [...] | "all"}`` chooses what
to receive (only the organization's vehicles, a list of at most 10,000; the server confirms
with ``{"type": "subscribed", "vehicle_ids": ...}``, or answers ``{"type": "error",
"message": ...}`` for a message it cannot follow, binary frames included; a message over 1
MiB closes with 1009, ``serve.WS_MAX_MESSAGE_BYTES``); events arrive as ``{"type":
"position" | "alert", "data": {...}}`` (``data``: the item ``GET /positions/latest`` or
``GET /alerts`` answers for it) and ``{"type": "ping"}`` every 20 s. A new ``auth`` message
extends the session; when the token expires without one, the stream closes with 4401. The
principal is resolved again at least every ``principal_cache_s`` (the same checks as an HTTP
request: the token, the user active, the organization not suspended), so a deactivation or
suspension also closes the stream with 4401 within seconds.

Each connection has a bounded queue: a client that does not keep up is cut off with 4429
instead of letting memory grow. A user holds at most ``stream_max_per_user`` streams in one
process (20 by default), an organization ``stream_max_per_org`` (200): one more is closed
with 1008 right after its auth, before ``ready``. Each ``subscribe`` and renewed ``auth``
counts as a request against the user's api rate limit; one over it is answered with an
``error`` and not followed. Postgres out of reach while a client
authenticates or subscribes closes with 1013 (try again later); another failure of the
server with 1011. Events come from the process's
``StreamHub`` (one Redis pub/sub connection for all clients), which fills the queues
without ever waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket
from sqlalchemy.exc import SQLAlchemyError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from milepost_api.context import ApiContext
from milepost_api.deps import charge_request
from milepost_api.ws.hub import OpenStreams, StreamHub
from milepost_common.auth import Realm
from milepost_common.db import Database, unit_of_work
from milepost_common.domain.devices import service as device_service
from milepost_common.domain.principals import Principal
from milepost_common.errors import RateLimited, Unauthorized
from milepost_common.logging import get_logger
from milepost_common.web.errors import DEPENDENCY_DOWN
from milepost_common.web.middleware import request_id_of

router = APIRouter(tags=["stream"])

CLOSE_UNAUTHORIZED = 4401
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_SLOW_CONSUMER = 4429
CLOSE_TOO_MANY = 1008  # RFC 6455's policy violation: opening another will not help
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN = 1013  # IANA's "Try Again Later": what 503 is to HTTP
MAX_SUBSCRIBED = 10_000
_SUBSCRIBE_ERROR = f'vehicle_ids: a list of at most {MAX_SUBSCRIBED:,} ids, or "all".'
_RATE_LIMITED = "Too many messages: subscribe and auth count against the request rate limit."
# Re-checks of the principal run every principal_cache_s, but not more often than this (a
# cache of 0 means every HTTP request is checked, not a query per connection in a loop).
RECHECK_FLOOR_S = 1.0

log = get_logger("milepost.api.stream")


class _Close(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class StreamSession:
    """One connection: authentication, subscription, relay, pings, expiry."""

    def __init__(
        self,
        websocket: WebSocket,
        ctx: ApiContext,
        db: Database,
        hub: StreamHub,
        open_streams: OpenStreams,
    ) -> None:
        self.ws = websocket
        self.ctx = ctx
        self.db = db
        self.hub = hub
        self.open_streams = open_streams
        settings = ctx.settings.api
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=settings.stream_queue_size)
        self.principal: Principal | None = None
        self.token = ""  # the latest token the client authenticated with
        self.vehicles: frozenset[uuid.UUID] | None = frozenset()  # None means all
        self.too_slow = asyncio.Event()
        self.reauthenticated = asyncio.Event()

    async def run(self) -> None:
        await self.ws.accept()
        try:
            await self._authenticate_first()
            principal = self.principal
            assert principal is not None  # noqa: S101 - set by the authentication above
            user_id, org_id = principal.id, principal.require_org()
            assert user_id is not None  # noqa: S101 - an access token names its user
            refused = self.open_streams.take(user_id, org_id)
            if refused is not None:
                raise _Close(CLOSE_TOO_MANY, refused)
            try:
                await self._send_now({"type": "ready"})
                await self._relay()
            finally:
                self.open_streams.give_back(user_id, org_id)
        except _Close as close:
            await self._close(close.code, close.reason)
        except WebSocketDisconnect:
            return
        except DEPENDENCY_DOWN as exc:
            # Postgres away while authenticating or subscribing (HTTP would answer 503).
            log.warning("stream_dependency_unavailable", error=type(exc).__name__)
            await self._close(CLOSE_TRY_AGAIN, "Service unavailable: reconnect later.")
        except Exception:  # a close frame (1011), not uvicorn's bare disconnect (1006)
            log.exception("stream_failed")
            await self._close(CLOSE_INTERNAL_ERROR, "Internal server error.")

    async def _authenticate_first(self) -> None:
        timeout = self.ctx.settings.api.stream_auth_timeout_s
        try:
            async with asyncio.timeout(timeout):
                raw = await self._receive()
        except TimeoutError:
            raise _Close(CLOSE_AUTH_TIMEOUT, "No auth message in time.") from None
        message = _parse(raw)
        if message.get("type") != "auth":
            raise _Close(CLOSE_UNAUTHORIZED, "The first message must be auth.")
        await self._authenticate(message)

    async def _authenticate(self, message: dict[str, Any]) -> None:
        token = message.get("token")
        if not isinstance(token, str) or not token:
            raise _Close(CLOSE_UNAUTHORIZED, "Invalid token.")
        try:
            async with unit_of_work(self.db) as session:
                principal = await self.ctx.resolver.from_access_token(session, token, Realm.API)
        except Unauthorized:
            raise _Close(CLOSE_UNAUTHORIZED, "Invalid or expired token.") from None
        if self.principal is not None and principal.id != self.principal.id:
            raise _Close(CLOSE_UNAUTHORIZED, "The token belongs to another user.")
        self.token = token
        self.principal = principal.with_request(
            self.ws.client.host if self.ws.client else None, request_id_of(self.ws.scope)
        )
        self.reauthenticated.set()

    async def _relay(self) -> None:
        assert self.principal is not None  # noqa: S101 - authenticated before relaying
        org_id = self.principal.require_org()
        try:
            await self.hub.join(org_id, self._deliver)
            await self._run_loops()
        finally:
            await self.hub.leave(org_id, self._deliver)

    async def _run_loops(self) -> None:
        tasks = [
            asyncio.create_task(self._receive_loop()),
            asyncio.create_task(self._too_slow_loop()),
            asyncio.create_task(self._send_loop()),
            asyncio.create_task(self._ping_loop()),
            asyncio.create_task(self._expiry_loop()),
            asyncio.create_task(self._recheck_loop()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=5.0)

    async def _receive_loop(self) -> None:
        while True:
            message = _parse(await self._receive())
            kind = message.get("type")
            if kind not in ("subscribe", "auth"):
                self._enqueue({"type": "error", "message": "Unknown message type."})
            elif not await self._within_rate_limit():
                self._enqueue({"type": "error", "message": _RATE_LIMITED})
            elif kind == "subscribe":
                await self._subscribe(message.get("vehicle_ids"))
            else:
                await self._authenticate(message)

    async def _within_rate_limit(self) -> bool:
        """Counts a message that makes the server work as one request of the user: the
        budget HTTP requests draw on (a subscription to 10,000 ids costs ~0.1 s)."""
        assert self.principal is not None  # noqa: S101 - authenticated before
        try:
            await charge_request(self.ctx, self.principal)
        except RateLimited:
            return False
        return True

    async def _receive(self) -> str:
        """The next message's text; a binary frame reads as text that is no JSON (the
        protocol is text), not as the ``KeyError`` of ``receive_text``."""
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
        text = message.get("text")
        return text if isinstance(text, str) else ""

    async def _subscribe(self, wanted: Any) -> None:
        assert self.principal is not None  # noqa: S101 - authenticated before subscribing
        if wanted == "all":
            self.vehicles = None
            self._enqueue({"type": "subscribed", "vehicle_ids": "all"})
            return
        ids = None
        # The length first: each id read holds the event loop, and every other client of
        # this process, ~1.8 µs (430,000 at uvicorn's default 16 MiB message limit: 0.76 s).
        if isinstance(wanted, list) and len(wanted) <= MAX_SUBSCRIBED:
            try:
                ids = {uuid.UUID(str(v)) for v in wanted}
            except ValueError:
                ids = None
        if ids is None:
            self._enqueue({"type": "error", "message": _SUBSCRIBE_ERROR})
            return
        async with unit_of_work(self.db) as session:
            owned = await device_service.owned_device_ids(session, self.principal, ids)
        self.vehicles = frozenset(owned)
        self._enqueue({"type": "subscribed", "vehicle_ids": sorted(str(v) for v in owned)})

    def _deliver(self, vehicle_id: uuid.UUID, frame: bytes) -> None:
        """The hub's callback for each event of the organization: queues it if watched,
        never waits (a full queue cuts this client off, not the others)."""
        if self.vehicles is not None and vehicle_id not in self.vehicles:
            return
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.too_slow.set()

    async def _too_slow_loop(self) -> None:
        await self.too_slow.wait()
        raise _Close(CLOSE_SLOW_CONSUMER, "Too slow: messages are piling up.")

    def _enqueue(self, message: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(orjson.dumps(message, option=orjson.OPT_UTC_Z))
        except asyncio.QueueFull:
            raise _Close(CLOSE_SLOW_CONSUMER, "Too slow: messages are piling up.") from None

    async def _send_loop(self) -> None:
        timeout = self.ctx.settings.api.stream_send_timeout_s
        while True:
            payload = await self.queue.get()
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that races the send finishing, and the loop would then never stop.
                async with asyncio.timeout(timeout):
                    await self.ws.send_text(payload.decode())
            except TimeoutError:
                raise _Close(CLOSE_SLOW_CONSUMER, "Too slow: a send timed out.") from None

    async def _ping_loop(self) -> None:
        interval = self.ctx.settings.api.stream_ping_interval_s
        while True:
            await asyncio.sleep(interval)
            self._enqueue({"type": "ping"})

    async def _expiry_loop(self) -> None:
        while True:
            assert self.principal is not None  # noqa: S101 - authenticated before
            expires_at = self.principal.token_expires_at
            if expires_at is None:
                return
            self.reauthenticated.clear()
            remaining = (expires_at - datetime.now(UTC)).total_seconds()
            try:
                async with asyncio.timeout(max(remaining, 0)):
                    await self.reauthenticated.wait()
            except TimeoutError:
                raise _Close(CLOSE_UNAUTHORIZED, "The token expired.") from None

    async def _recheck_loop(self) -> None:
        """Closes with 4401 once the principal would be refused on an HTTP request. A
        database that cannot answer skips one check: the stream keeps what it had."""
        interval = max(self.ctx.settings.auth.principal_cache_s, RECHECK_FLOOR_S)
        while True:
            await asyncio.sleep(interval)
            try:
                async with unit_of_work(self.db) as session:
                    await self.ctx.resolver.from_access_token(session, self.token, Realm.API)
            except Unauthorized as exc:
                raise _Close(CLOSE_UNAUTHORIZED, exc.message) from None
            except (SQLAlchemyError, OSError) as exc:
                log.warning("stream_recheck_failed", error=type(exc).__name__)

    async def _send_now(self, message: dict[str, Any]) -> None:
        await self.ws.send_text(orjson.dumps(message).decode())

    async def _close(self, code: int, reason: str) -> None:
        if self.ws.application_state == WebSocketState.DISCONNECTED:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5.0):
                await self.ws.close(code=code, reason=reason)


def _parse(raw: str) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


@router.websocket("/v1/stream", name="stream")
async def stream(websocket: WebSocket) -> None:
    """Live positions and alerts; authentication is the first message (see the module)."""
    app = websocket.app
    state = app.state
    await StreamSession(websocket, state.ctx, state.db, state.stream_hub, state.open_streams).run()
