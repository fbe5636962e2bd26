"""Short Redis caching of whole answers where it pays (latest positions, summaries).

An entry is the answer's final bytes with their ETag in front (``W/"…"\\n`` then the body),
so a hit is served without serializing or hashing anything. Each process also keeps the
bodies it served last: a hit first reads only the ETag from Redis (``GETRANGE``, a few
dozen bytes) and sends the local copy when it is still the current one, so a large answer
crosses from Redis at most once per process and version. Whoever drops the key (the
worker, on every position event) drops the entry for every process at once.

A cache never fails a read: when Redis cannot answer, the database does. A miss is computed
once per process at a time (single flight): concurrent requests for the same key wait for
that one computation instead of all running the query at once when an entry expires or is
dropped (a stampede that would exhaust the connection pool).

A client that accepts gzip (nearly every one) gets the body compressed once per process and
version, not on every hit: compressing a 1.5 MB report costs more than everything else the
hit does.
"""

from __future__ import annotations

import gzip
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi.responses import Response
from redis.asyncio import Redis
from starlette.requests import Request

from milepost_api.http_cache import etag_of
from milepost_common.cache import SingleFlight, TtlCache
from milepost_common.logging import get_logger
from milepost_common.web.middleware import GZIP_LEVEL, GZIP_MINIMUM_BYTES, accepts_gzip

log = get_logger("milepost.api.cache")

# Every ETag is `W/"` + 32 hex digits + `"`.
_ETAG_BYTES = len(etag_of(b""))


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


class ResponseCache:
    """Whole answers in Redis for a few seconds, with this process's copies of the bodies."""

    def __init__(self, redis: Redis, *, local_ttl_s: float, local_entries: int = 64) -> None:
        self.redis = redis
        # The bodies this process served last, by key; used only while Redis still names
        # their ETag, so their time to live only bounds the memory they hold.
        self._local: TtlCache[str, Cached] = TtlCache(local_ttl_s, max_entries=local_entries)
        # The gzip of a body, by its ETag.
        self._gzipped: TtlCache[str, bytes] = TtlCache(local_ttl_s, max_entries=local_entries)
        self._in_flight: SingleFlight[str, Cached] = SingleFlight()

    def response(self, request: Request, value: Cached, media_type: str) -> Response:
        """The answer for ``value``: its bytes and ETag, compressed (once) for a client that
        accepts gzip. The edge's compression lets an answer with an encoding pass."""
        if len(value.body) < GZIP_MINIMUM_BYTES or not accepts_gzip(request.scope):
            return Response(value.body, media_type=media_type, headers={"ETag": value.etag})
        body = self._gzipped.get(value.etag)
        if body is None:
            body = gzip.compress(value.body, compresslevel=GZIP_LEVEL, mtime=0)
            self._gzipped.put(value.etag, body)
        headers = {
            "ETag": value.etag,
            "Content-Encoding": "gzip",
            "Vary": "Authorization, Accept, Accept-Encoding",
        }
        return Response(body, media_type=media_type, headers=headers)

    async def get(self, key: str) -> Cached | None:
        """The cached answer, None on a miss or when Redis cannot answer."""
        try:
            head = await self.redis.getrange(key, 0, _ETAG_BYTES - 1)
            if not head:
                return None
            local = self._local.get(key)
            if local is not None and local.etag.encode() == head:
                return local
            entry = await self.redis.get(key)
        except Exception as exc:  # noqa: BLE001 - a cache must never fail the read
            log.warning("cache_unavailable", error=type(exc).__name__)
            return None
        found = Cached.from_entry(entry) if entry else None
        if found is not None:
            self._local.put(key, found)
        return found

    async def put(self, key: str, value: Cached, ttl_s: int) -> None:
        if ttl_s <= 0:
            return
        try:
            await self.redis.set(key, value.entry(), ex=ttl_s)
        except Exception as exc:  # noqa: BLE001 - a cache must never fail the read
            log.warning("cache_unavailable", error=type(exc).__name__)
            return
        self._local.put(key, value)

    async def cached(self, key: str, ttl_s: int, compute: Callable[[], Awaitable[bytes]]) -> Cached:
        """The cached answer, or ``compute()``'s, stored for ``ttl_s``; one computation per
        key and process at a time. Errors of ``compute`` reach every waiter."""
        value = await self.get(key)
        if value is not None:
            return value

        async def compute_and_keep() -> Cached:
            computed = Cached.of(await compute())
            await self.put(key, computed, ttl_s)
            return computed

        return await self._in_flight.run(key, compute_and_keep)
