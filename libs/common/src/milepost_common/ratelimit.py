"""Rate limits on Redis with the ``limits`` library (sliding-window counter); fail open.

A Redis outage must not take the apps down with it: when the limiter cannot answer, the
request goes through and a warning is logged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from milepost_common.errors import RateLimited
from milepost_common.logging import get_logger

log = get_logger("milepost.ratelimit")


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset_after_s: int

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(max(0, self.remaining)),
            "RateLimit-Reset": str(self.reset_after_s),
        }


class RateLimiter:
    def __init__(self, redis_url: str) -> None:
        # The redis-py implementation: one client library in the whole code base.
        self._storage = RedisStorage(
            redis_url.replace("redis://", "async+redis://", 1),
            implementation="redispy",
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
        )
        self._limiter = SlidingWindowCounterRateLimiter(self._storage)

    async def hit(self, rate: str | RateLimitItem, *identifiers: str) -> Verdict | None:
        """Count one hit; None when Redis could not answer (fail open)."""
        item = parse(rate) if isinstance(rate, str) else rate
        try:
            allowed = await self._limiter.hit(item, *identifiers)
            stats = await self._limiter.get_window_stats(item, *identifiers)
        except Exception as exc:  # noqa: BLE001 - any storage failure fails open
            log.warning("rate_limit_unavailable", error=type(exc).__name__)
            return None
        reset = max(1, int(stats.reset_time - time.time()))
        return Verdict(allowed, item.amount, stats.remaining, reset)

    async def enforce(self, rate: str | RateLimitItem, *identifiers: str) -> Verdict | None:
        """Raises RateLimited (429 with Retry-After and RateLimit-* headers) when over."""
        verdict = await self.hit(rate, *identifiers)
        if verdict is not None and not verdict.allowed:
            raise RateLimited(verdict.reset_after_s, headers=verdict.headers())
        return verdict

    async def reset(self, rate: str | RateLimitItem, *identifiers: str) -> None:
        item = parse(rate) if isinstance(rate, str) else rate
        try:
            await self._limiter.clear(item, *identifiers)
        except Exception as exc:  # noqa: BLE001
            log.warning("rate_limit_unavailable", error=type(exc).__name__)
