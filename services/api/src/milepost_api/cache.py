"""Short Redis caching of whole answers where it pays (latest positions, summaries).

An entry is the answer's final bytes with their ETag in front (``W/"…"\\n`` then the body),
so a hit is served without serializing or hashing anything. Whoever drops the key (the
worker, on every position event) drops the entry for every process at once.

Each process also keeps the bodies it served last, and serves them without asking Redis
while Redis promises to say when they change: one connection per process
(:class:`KeyTracker`) has Redis report every change to any key under the cache's prefix
(server-assisted client-side caching, ``CLIENT TRACKING ... BCAST``: writes, deletes,
expiry, eviction, flushes, by any client). The freshness rule, in plain words:

- a process serves its copy until Redis reports the key changed, which reaches it
  sub-millisecond after the worker's drop;
- while its tracking connection is down (reconnecting, or refused by an old Redis or a
  proxy) it checks Redis on every read: it reads only the ETag (``GETRANGE``, a few dozen
  bytes) and sends its copy when that is still the current one, so a large answer crosses
  from Redis at most once per process and version;
- never longer than the entry's time to live, counted from when it was read from Redis:
  that bounds the staleness if the tracking connection is cut off silently.

A copy is trusted only when no change of its key (nor a flush, nor a disconnect) was
reported while it was read: a drop that races the read makes the next read ask again.

A cache never fails a read: when Redis cannot answer, the database does. A miss is computed
once per process at a time (single flight): concurrent requests for the same key wait for
that one computation instead of all running the query at once when an entry expires or is
dropped (a stampede that would exhaust the connection pool).

A client that accepts gzip (nearly every one) gets the body compressed once per process and
version, not on every hit: compressing a 1.5 MB report costs more than everything else the
hit does. A large body is compressed in a thread, so the process's other requests go on.

An answer over ``MAX_CACHED_BYTES`` (a year of a large fleet's summary is 90 MB) is served but
never kept: not in Redis, whose single thread every app and the worker's queue share, and
not among this process's copies, whose bytes are bounded (``LOCAL_BYTES``): beyond them the
least recently read go first, so a process serving many organizations keeps each one's
copy instead of starting over and asking Redis again.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

from fastapi.responses import Response
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError
from starlette.requests import Request

from milepost_api.http_cache import etag_of
from milepost_api.liveness import QuietWatch
from milepost_common.cache import SingleFlight
from milepost_common.logging import get_logger
from milepost_common.web.middleware import GZIP_LEVEL, GZIP_MINIMUM_BYTES, accepts_gzip

log = get_logger("milepost.api.cache")
V = TypeVar("V")

# About a week's summary of 2,000 vehicles.
MAX_CACHED_BYTES = 4 * 1024 * 1024
# What each of a process's stores of bodies (its copies, their gzip, their other
# representations) may hold in all: the latest positions of 250 fleets of 1,000 vehicles.
LOCAL_BYTES = 64 * 1024 * 1024
# gzip takes about 9 ms a megabyte here: from this size on, not on the event loop.
GZIP_IN_THREAD_BYTES = 1024 * 1024
# Every ETag is `W/"` + 32 hex digits + `"`.
_ETAG_BYTES = len(etag_of(b""))

# Where Redis sends a tracking connection's reports (RESP2: a pub/sub channel).
INVALIDATIONS = "__redis__:invalidate"
READ_TIMEOUT_S = 0.5
# A quiet connection is asked for a PONG this often; none within the socket timeout: broken.
PING_INTERVAL_S = 1.0
RETRY_FIRST_S = 0.1
RETRY_MAX_S = 5.0
# Keys whose change count is kept, before they are all forgotten at once (and with them
# every version handed out, so nothing is trusted on a forgotten count).
_MAX_COUNTED_KEYS = 10_000

# What a key was when a read began: (generation, number of reported changes of the key).
Version = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Cached:
    """An answer's body and its ETag."""

    etag: str
    body: bytes

    @classmethod
    def of(cls, body: bytes) -> Cached:
        return cls(etag_of(body), body)

    def entry(self) -> bytes:
        return self.etag.encode() + b"\n" + self.body

    @classmethod
    def from_entry(cls, entry: bytes) -> Cached | None:
        etag, newline, body = entry.partition(b"\n")
        return cls(etag.decode(), body) if newline and len(etag) == _ETAG_BYTES else None


class _TrackingRefused(Exception):
    """Redis refused ``CLIENT TRACKING`` (before 6.0, or a proxy): no use asking again."""


class KeyTracker:
    """Tells whether a key under ``prefixes`` may have changed since a moment, from Redis's
    own reports on one connection per process; until it is started and connected, every
    key may have (nothing is trusted)."""

    def __init__(self, redis: Redis, prefixes: Sequence[str]) -> None:
        # Named so `CLIENT LIST` tells which process holds which connection.
        self.client_name = f"milepost-api-cache:{socket.gethostname()}:{os.getpid()}"
        self._prefixes = tuple(prefixes)
        pool = redis.connection_pool
        self._connection_class = pool.connection_class
        self._connection_kwargs: dict[str, Any] = {
            **pool.connection_kwargs,
            "client_name": self.client_name,
            # A health check's PING would read a pending report as its answer: _listen pings.
            "health_check_interval": 0,
            "decode_responses": False,
            # No silent reconnects inside redis-py: _run reconnects, and says so.
            "retry": Retry(NoBackoff(), 0),
        }
        self._timeout_s = float(pool.connection_kwargs.get("socket_timeout") or 2.0)
        self._live = False
        self._generation = 0
        self._changes: dict[str, int] = {}
        self._connection: AbstractConnection | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def live(self) -> bool:
        """Connected and subscribed: every change from now on will be reported."""
        return self._live

    def version(self, key: str) -> Version | None:
        """What ``key`` is now, to compare after reading it; None when a read of it cannot
        be trusted whatever happens (not live, or a key Redis does not report)."""
        if not self._live or not key.startswith(self._prefixes):
            return None
        return self._generation, self._changes.get(key, 0)

    def unchanged(self, key: str, version: Version) -> bool:
        """No change of ``key``, flush or disconnect was reported since ``version``."""
        return self._live and version == (self._generation, self._changes.get(key, 0))

    def changed(self, keys: Sequence[str] | None) -> None:
        """What a report does: ``keys`` changed; None, every key (a flush)."""
        if keys is None:
            self._forget_all()
            return
        for key in keys:
            self._changes[key] = self._changes.get(key, 0) + 1
        if len(self._changes) > _MAX_COUNTED_KEYS:
            self._forget_all()

    def _forget_all(self) -> None:
        self._changes.clear()
        self._generation += 1

    def _set_live(self, live: bool) -> None:
        self._live = live
        self._forget_all()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cache-key-tracker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
            self._task = None
        self._set_live(False)
        await self._disconnect()

    async def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.disconnect(nowait=True)

    async def _run(self) -> None:
        delay = RETRY_FIRST_S
        broken = False
        while True:
            try:
                connection = await self._connect()
                if broken:
                    log.info("cache_tracking_reconnected")
                broken, delay = False, RETRY_FIRST_S
                await self._listen(connection)
            except _TrackingRefused as exc:
                # The cache then checks Redis on every read, as without tracking.
                log.warning("cache_tracking_unavailable", error=str(exc))
                await self._disconnect()
                return
            except Exception as exc:  # noqa: BLE001 - whatever broke, a new connection mends
                error = repr(exc)
            self._set_live(False)
            await self._disconnect()
            broken = True
            log.warning("cache_tracking_disconnected", error=error, retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(2 * delay, RETRY_MAX_S)

    async def _connect(self) -> AbstractConnection:
        """A connection that receives a report of every change under the prefixes."""
        await self._disconnect()
        connection = self._connection = self._connection_class(**self._connection_kwargs)
        await connection.connect()  # type: ignore[no-untyped-call]
        try:
            await connection.send_command("CLIENT", "ID")
            own_id = await connection.read_response()
            # RESP2 carries reports only as pub/sub messages: to this same connection, once
            # subscribed; nothing is reported before, and nothing is trusted until then.
            prefixes = [arg for prefix in self._prefixes for arg in ("PREFIX", prefix)]
            await connection.send_command(
                "CLIENT", "TRACKING", "ON", "REDIRECT", own_id, "BCAST", *prefixes
            )
            await connection.read_response()
        except ResponseError as exc:
            raise _TrackingRefused(str(exc)) from exc
        await connection.send_command("SUBSCRIBE", INVALIDATIONS)
        reply = await connection.read_response()
        if not isinstance(reply, list) or reply[0] != b"subscribe":
            raise ConnectionError(f"unexpected answer to SUBSCRIBE: {reply!r}")
        self._set_live(True)
        return connection

    async def _listen(self, connection: AbstractConnection) -> None:
        """Applies reports until the connection breaks or stops answering PING."""
        watch = QuietWatch(PING_INTERVAL_S, self._timeout_s)
        while True:
            message = await connection.read_response(timeout=READ_TIMEOUT_S)
            if message is not None:
                watch.heard(pong=message[0] == b"pong")
                if message[0] == b"message":
                    keys = message[2]
                    self.changed(None if keys is None else [key.decode() for key in keys])
            elif watch.ping_due():
                await connection.send_command("PING")


class _Copy(NamedTuple):
    """A body this process served. Served without asking Redis until ``until`` while nothing
    was reported about its key since ``version`` was taken, before the body was read or
    written (None: always ask)."""

    value: Cached
    version: Version | None
    until: float


class _Kept(Generic[V]):
    """Values by key for ``ttl_s`` seconds each, weighed in bytes: past ``max_bytes`` in
    all, the least recently read go first; a value heavier than ``max_value_bytes`` is not
    kept at all."""

    def __init__(
        self, ttl_s: float, max_bytes: int, max_value_bytes: int, weigh: Callable[[V], int]
    ) -> None:
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self.max_value_bytes = min(max_value_bytes, max_bytes)
        self._weigh = weigh
        self._data: OrderedDict[str, tuple[float, V, int]] = OrderedDict()
        self._bytes = 0

    def get(self, key: str) -> V | None:
        hit = self._data.get(key)
        if hit is None:
            return None
        if hit[0] <= time.monotonic():
            self._drop(key)
            return None
        self._data.move_to_end(key)
        return hit[1]

    def put(self, key: str, value: V) -> None:
        weight = self._weigh(value)
        if self.ttl_s <= 0 or weight > self.max_value_bytes:
            return
        self._drop(key)
        self._data[key] = (time.monotonic() + self.ttl_s, value, weight)
        self._bytes += weight
        while self._bytes > self.max_bytes:
            self._bytes -= self._data.popitem(last=False)[1][2]

    def _drop(self, key: str) -> None:
        gone = self._data.pop(key, None)
        if gone is not None:
            self._bytes -= gone[2]


class ResponseCache:
    """Whole answers in Redis for a few seconds, with this process's copies of the bodies."""

    def __init__(
        self,
        redis: Redis,
        *,
        local_ttl_s: float,
        local_bytes: int = LOCAL_BYTES,
        tracker: KeyTracker | None = None,
        max_body_bytes: int = MAX_CACHED_BYTES,
    ) -> None:
        self.redis = redis
        self.max_body_bytes = max_body_bytes
        # Without a started tracker nothing is trusted: every read checks Redis.
        self.tracker = tracker if tracker is not None else KeyTracker(redis, ())

        # The bodies this process served last, by key: served without asking Redis while
        # trusted, else only while Redis still names their ETag; their time to live here
        # only bounds the memory they hold.
        def kept(weigh: Callable[[V], int]) -> _Kept[V]:
            return _Kept(local_ttl_s, local_bytes, max_body_bytes, weigh)

        self._local: _Kept[_Copy] = kept(lambda c: len(c.value.body))
        # The gzip of a body, by its ETag.
        self._gzipped: _Kept[bytes] = kept(len)
        # Another representation of a body, by the representation's name and the body's ETag.
        self._variants: _Kept[Cached] = kept(lambda c: len(c.body))
        self._in_flight: SingleFlight[str, Cached] = SingleFlight()

    async def response(self, request: Request, value: Cached, media_type: str) -> Response:
        """The answer for ``value``: its bytes and ETag, compressed (once, unless too large
        to keep) for a client that accepts gzip. The edge's compression lets an answer with
        an encoding pass."""
        size = len(value.body)
        if size < GZIP_MINIMUM_BYTES or not accepts_gzip(request.scope):
            return Response(value.body, media_type=media_type, headers={"ETag": value.etag})
        body = self._gzipped.get(value.etag)
        if body is None:
            if size < GZIP_IN_THREAD_BYTES:
                body = _gzip(value.body)
            else:
                body = await asyncio.to_thread(_gzip, value.body)
            # What is too large to keep is the answer, however small its gzip.
            if size <= self.max_body_bytes:
                self._gzipped.put(value.etag, body)
        headers = {
            "ETag": value.etag,
            "Content-Encoding": "gzip",
            "Vary": "Authorization, Accept, Accept-Encoding",
        }
        return Response(body, media_type=media_type, headers=headers)

    def variant(self, value: Cached, name: str, make: Callable[[bytes], bytes]) -> Cached:
        """``make(value.body)`` with its own ETag (the GeoJSON of a JSON page), made once
        per process and version of ``value``: kept by ``value``'s ETag, so it changes
        exactly when ``value`` does, and served, compressed and revalidated as a hit is."""
        key = f"{name}:{value.etag}"
        made = self._variants.get(key)
        if made is None:
            made = Cached.of(make(value.body))
            self._variants.put(key, made)
        return made

    async def get(self, key: str, ttl_s: float) -> Cached | None:
        """The cached answer, None on a miss or when Redis cannot answer; without asking
        Redis when this process read it less than ``ttl_s`` ago and no change was reported."""
        copy = self._local.get(key)
        if (
            copy is not None
            and copy.version is not None
            and copy.until > time.monotonic()
            and self.tracker.unchanged(key, copy.version)
        ):
            return copy.value
        version, until = self.tracker.version(key), time.monotonic() + ttl_s
        try:
            head = await self.redis.getrange(key, 0, _ETAG_BYTES - 1)
            if not head:
                return None
            if copy is not None and copy.value.etag.encode() == head:
                self._local.put(key, _Copy(copy.value, version, until))
                return copy.value
            entry = await self.redis.get(key)
        except Exception as exc:  # noqa: BLE001 - a cache must never fail the read
            log.warning("cache_unavailable", error=type(exc).__name__)
            return None
        found = Cached.from_entry(entry) if entry else None
        if found is not None:
            self._local.put(key, _Copy(found, version, until))
        return found

    async def put(self, key: str, value: Cached, ttl_s: int) -> None:
        if ttl_s <= 0:
            return
        version, until = self.tracker.version(key), time.monotonic() + ttl_s
        try:
            await self.redis.set(key, value.entry(), ex=ttl_s)
        except Exception as exc:  # noqa: BLE001 - a cache must never fail the read
            log.warning("cache_unavailable", error=type(exc).__name__)
            return
        # Our own SET is reported too: the next read after that asks Redis once more.
        self._local.put(key, _Copy(value, version, until))

    async def cached(self, key: str, ttl_s: int, compute: Callable[[], Awaitable[bytes]]) -> Cached:
        """The cached answer, or ``compute()``'s, stored for ``ttl_s``; one computation per
        key and process at a time. Errors of ``compute`` reach every waiter."""
        value = await self.get(key, ttl_s)
        if value is not None:
            return value

        async def compute_and_keep() -> Cached:
            computed = Cached.of(await compute())
            if len(computed.body) <= self.max_body_bytes:
                await self.put(key, computed, ttl_s)
            return computed

        return await self._in_flight.run(key, compute_and_keep)


def _gzip(body: bytes) -> bytes:
    return gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)
