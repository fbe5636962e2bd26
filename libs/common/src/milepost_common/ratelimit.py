"""Rate limits on Redis with the ``limits`` library (sliding-window counter); fail open.

A Redis outage must not take the apps down with it: when the limiter cannot answer, the
request goes through and a warning is logged.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from functools import lru_cache

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio import ConnectionPool

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

    async def aclose(self) -> None:
        """Close the Redis connections (at shutdown)."""
        await self._pool.aclose()

    async def enforce(self, rate: str | RateLimitItem, *identifiers: str) -> bool:
        """Count one hit: True when counted, False when Redis could not answer (fail open).

        Raises RateLimited (429 with Retry-After and RateLimit-* headers) when over the limit.
        An allowed hit costs one Redis round trip; the window's figures are read only for a 429.
        """
        item = parse(rate) if isinstance(rate, str) else rate
        try:
            if await self._limiter.hit(item, *identifiers):
                return True
            stats = await self._limiter.get_window_stats(item, *identifiers)
        except Exception as exc:  # noqa: BLE001 - any storage failure fails open
            log.warning("rate_limit_unavailable", error=type(exc).__name__)
            return False
        window = Window(item.amount, stats.remaining, max(1, int(stats.reset_time - time.time())))
        raise RateLimited(window.reset_after_s, headers=window.headers())

    async def test(self, rate: str | RateLimitItem, *identifiers: str) -> bool:
        """Whether one more hit would be allowed, without counting it (raises if Redis is down)."""
        item = parse(rate) if isinstance(rate, str) else rate
        return await self._limiter.test(item, *identifiers)


class LoginThrottle:
    """Failed logins counted per email and per client IP; over either limit → 429.

    Only failures count (they age out of the one-minute window), so a user who types the
    right password is never locked out by their own logins; the answer never tells whether
    the email exists.
    """

    def __init__(self, limiter: RateLimiter, attempts_per_minute: int) -> None:
        self._limiter = limiter
        self._per_email = parse(f"{attempts_per_minute}/minute")
        self._per_ip = parse(f"{attempts_per_minute * 5}/minute")

    async def check(self, email: str, ip: str) -> None:
        """Raises RateLimited when this email or IP has failed too often recently."""
        for item, key in (
            (self._per_email, ("login-email", email.lower())),
            (self._per_ip, ("login-ip", ip)),
        ):
            try:
                allowed = await self._limiter.test(item, *key)
            except Exception as exc:  # noqa: BLE001 - fail open
                log.warning("rate_limit_unavailable", error=type(exc).__name__)
                return
            if not allowed:
                raise RateLimited(60, "Too many failed login attempts; try again later.")

    async def failed(self, email: str, ip: str) -> None:
        for item, key in (
            (self._per_email, ("login-email", email.lower())),
            (self._per_ip, ("login-ip", ip)),
        ):
            with contextlib.suppress(RateLimited):
                await self._limiter.enforce(item, *key)
