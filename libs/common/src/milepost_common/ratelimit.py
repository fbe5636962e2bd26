"""Rate limits on Redis with the ``limits`` library (sliding-window counter); fail open.

A Redis outage must not take the apps down with it: when the limiter cannot answer, the
request goes through and a warning is logged.

Hits are counted in Redis ahead of time, a few at once (a *lease*), so a busy caller costs
one Redis round trip per lease instead of one per request. The tolerance, per process: a
lease holds at most half a second's worth of the limit (``lease_size``, at most
``MAX_LEASE``) and lives ``LEASE_S``; its hits are counted when it is taken, so a request is
never admitted that Redis did not count, only counted up to ``LEASE_S`` before it happens;
hits of a lease left unused are counted without a request (a caller slightly below its limit
may be refused a little early, never let through above it). A limit under two hits a
second is counted one hit at a time, exactly, as is every hit once a lease no longer fits
the window. The login throttle (below) never uses leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import lru_cache

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio import ConnectionPool, Redis

from milepost_common.auth import normalize_email
from milepost_common.errors import RateLimited
from milepost_common.logging import get_logger

log = get_logger("milepost.ratelimit")


@dataclass(frozen=True, slots=True)
class Window:
    """Where a refused caller stands in the current window (for the 429's headers)."""

    limit: int
    remaining: int
    reset_after_s: int

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(max(0, self.remaining)),
            "RateLimit-Reset": str(self.reset_after_s),
        }


@lru_cache(maxsize=256)
def _parsed(rate: str) -> RateLimitItem | None:
    try:
        return parse(rate)
    except ValueError:
        return None


def effective_rate(own: str | None, default: str) -> RateLimitItem | None:
    """An organization's own limit (its plan) when set and valid, else the service default;
    None when neither parses (no limit). Parsed once per distinct string."""
    return (_parsed(own) if own else None) or _parsed(default)


# How long the hits of a lease may be used, and the most hits one lease takes.
LEASE_S = 1.0
MAX_LEASE = 50
# Leases kept before the spent ones are dropped.
_MAX_LEASES = 10_000


def lease_size(item: RateLimitItem) -> int:
    """Hits taken at once for ``item``: half a second's worth of the limit, 1 to MAX_LEASE."""
    per_second = item.amount / item.get_expiry()
    return max(1, min(MAX_LEASE, int(per_second / 2)))


@dataclass(slots=True)
class _Lease:
    left: int
    expires: float


class RateLimiter:
    def __init__(self, redis_url: str) -> None:
        # Our own pool (redis-py, the one client library of the code base), so we can close it.
        self._pool = ConnectionPool.from_url(
            redis_url, socket_timeout=0.5, socket_connect_timeout=0.5
        )
        self._storage = RedisStorage(
            redis_url.replace("redis://", "async+redis://", 1),
            implementation="redispy",
            connection_pool=self._pool,  # type: ignore[arg-type]
        )
        self._limiter = SlidingWindowCounterRateLimiter(self._storage)
        # The same connections, for what `limits` cannot do (the login throttle).
        self.redis = Redis(connection_pool=self._pool)
        # Hits counted in Redis and not used yet, by the limit's key; and the lease being
        # taken for a key, which concurrent requests for that key wait for.
        self._leases: dict[str, _Lease] = {}
        self._taking: dict[str, asyncio.Future[None]] = {}

    async def aclose(self) -> None:
        """Close the Redis connections (at shutdown)."""
        await self._pool.aclose()

    async def enforce(self, rate: str | RateLimitItem, *identifiers: str) -> bool:
        """Count one hit: True when counted, False when Redis could not answer (fail open).

        Raises RateLimited (429 with Retry-After and RateLimit-* headers) when over the limit.
        Most allowed hits are taken from a lease counted earlier (no Redis round trip); the
        window's figures are read only for a 429.
        """
        item = parse(rate) if isinstance(rate, str) else rate
        key = item.key_for(*identifiers)
        while True:
            lease = self._leases.get(key)
            if lease is not None and lease.left > 0 and lease.expires > time.monotonic():
                lease.left -= 1
                return True
            taking = self._taking.get(key)
            if taking is None:
                break
            await asyncio.shield(taking)
        self._taking[key] = asyncio.get_running_loop().create_future()
        try:
            return await self._take(item, key, identifiers)
        finally:
            self._taking.pop(key).set_result(None)

    def _keep(self, key: str, lease: _Lease) -> None:
        if len(self._leases) >= _MAX_LEASES:
            # Callers come and go: forget the leases that have run out.
            now = time.monotonic()
            self._leases = {k: v for k, v in self._leases.items() if v.expires > now and v.left}
        self._leases[key] = lease

    async def _take(self, item: RateLimitItem, key: str, identifiers: tuple[str, ...]) -> bool:
        """Count this hit and, when the window has room, the next ones of a lease."""
        size = lease_size(item)
        try:
            if size > 1 and await self._limiter.hit(item, *identifiers, cost=size):
                self._keep(key, _Lease(size - 1, time.monotonic() + LEASE_S))
                return True
            self._leases.pop(key, None)
            if await self._limiter.hit(item, *identifiers):
                return True
            stats = await self._limiter.get_window_stats(item, *identifiers)
        except Exception as exc:  # noqa: BLE001 - any storage failure fails open
            log.warning("rate_limit_unavailable", error=type(exc).__name__)
            return False
        window = Window(item.amount, stats.remaining, max(1, int(stats.reset_time - time.time())))
        raise RateLimited(window.reset_after_s, headers=window.headers())


# Reserve one attempt in every bucket (KEYS), or in none when any is full. A sorted set per
# bucket holds the attempts of the last window (score: Redis' own clock, so processes with
# skewed clocks agree); ARGV: window ms, the attempt's id, then each bucket's limit.
# Returns 0 when reserved, else the milliseconds until the fullest bucket frees a place.
_RESERVE = """
local now_s, now_us = unpack(redis.call('TIME'))
local now = now_s * 1000 + math.floor(now_us / 1000)
local window = tonumber(ARGV[1])
local wait = 0
for i, key in ipairs(KEYS) do
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    if redis.call('ZCARD', key) >= tonumber(ARGV[2 + i]) then
        local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
        wait = math.max(wait, tonumber(oldest[2]) + window - now)
    end
end
if wait > 0 then
    return wait
end
for _, key in ipairs(KEYS) do
    redis.call('ZADD', key, now, ARGV[2])
    redis.call('PEXPIRE', key, window)
end
return 0
"""


class LoginThrottle:
    """Login attempts per email and per client IP (five times the email's limit), counted
    before the password is checked; over either limit → 429.

    Each attempt is reserved in both buckets by one Redis script, so concurrent attempts
    from any number of processes never get more password checks than the limit (no local
    budget, no approximate counter: this limit holds exactly). A successful login releases
    its attempt, so only failures stay counted for the minute and a user who types the right
    password is never locked out by their own logins. Emails are keyed in the one normalized
    form logins use (and hashed: no addresses in Redis). The answer never tells whether the
    email exists. Fails open, like every limit here, when Redis cannot answer.
    """

    WINDOW_S = 60

    def __init__(self, limiter: RateLimiter, attempts_per_minute: int) -> None:
        self._redis = limiter.redis
        self._reserve = self._redis.register_script(_RESERVE)
        self._limits = (attempts_per_minute, attempts_per_minute * 5)

    @staticmethod
    def _keys(email: str, ip: str) -> list[str]:
        digest = hashlib.sha256(normalize_email(email).encode()).hexdigest()
        return [f"milepost:login:email:{digest}", LoginThrottle._ip_key(ip)]

    @staticmethod
    def _ip_key(ip: str) -> str:
        return f"milepost:login:ip:{ip}"

    def attempt(self, email: str, ip: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Reserve one attempt for the block; it stays counted if the block raises (a wrong
        password) and is released when it returns. Raises RateLimited when either bucket is
        full."""
        return self._attempt(self._keys(email, ip), self._limits)

    def ip_attempt(self, ip: str) -> contextlib.AbstractAsyncContextManager[None]:
        """``attempt`` in the client IP's bucket alone, for a login that names no email
        before it is checked (single sign-on): its failures spend the same per-IP budget."""
        return self._attempt([self._ip_key(ip)], self._limits[1:])

    @contextlib.asynccontextmanager
    async def _attempt(self, keys: list[str], limits: tuple[int, ...]) -> AsyncIterator[None]:
        member = uuid.uuid4().hex
        try:
            wait_ms = int(
                await self._reserve(keys=keys, args=[self.WINDOW_S * 1000, member, *limits])
            )
        except Exception as exc:  # noqa: BLE001 - fail open
            log.warning("rate_limit_unavailable", error=type(exc).__name__)
            wait_ms = 0
        if wait_ms > 0:
            raise RateLimited(
                math.ceil(wait_ms / 1000), "Too many failed login attempts; try again later."
            )
        yield
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.zrem(key, member)
                await pipe.execute()
        except Exception as exc:  # noqa: BLE001 - the attempt then ages out with the window
            log.warning("rate_limit_unavailable", error=type(exc).__name__)
