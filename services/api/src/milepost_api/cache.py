"""Short Redis caching where it pays (latest positions, summaries).

A cache never fails a read: when Redis cannot answer, the database does. A miss is computed
once per process at a time (single flight): concurrent requests for the same key wait for
that one computation instead of all running the query at once when an entry expires or is
dropped (a stampede that would exhaust the connection pool).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from milepost_common.logging import get_logger

log = get_logger("milepost.api.cache")

_in_flight: dict[str, asyncio.Future[bytes]] = {}


class _LeaderGone(Exception):
    """The request computing a value was cancelled (its client left): compute it again."""


async def cache_get(redis: Redis, key: str) -> bytes | None:
    try:
        value: bytes | None = await redis.get(key)
    except Exception as exc:  # noqa: BLE001 - a cache must never fail the read
        log.warning("cache_unavailable", error=type(exc).__name__)
        return None
    return value


async def cache_set(redis: Redis, key: str, value: bytes, ttl_s: int) -> None:
    if ttl_s <= 0:
        return
    try:
        await redis.set(key, value, ex=ttl_s)
    except Exception as exc:  # noqa: BLE001 - a cache must never fail the read
        log.warning("cache_unavailable", error=type(exc).__name__)


async def cached(
    redis: Redis, key: str, ttl_s: int, compute: Callable[[], Awaitable[bytes]]
) -> bytes:
    """The cached bytes, or ``compute()``'s, stored for ``ttl_s``; one computation per key
    and process at a time. Errors of ``compute`` reach every waiter."""
    value = await cache_get(redis, key)
    if value is not None:
        return value
    pending = _in_flight.get(key)
    if pending is not None:
        try:
            return await asyncio.shield(pending)
        except _LeaderGone:
            return await compute()
    future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    _in_flight[key] = future
    try:
        value = await compute()
        await cache_set(redis, key, value, ttl_s)
    except BaseException as exc:
        future.set_exception(_LeaderGone() if isinstance(exc, asyncio.CancelledError) else exc)
        # Consumed here so an unawaited failure is not reported as never retrieved.
        future.exception()
        raise
    else:
        future.set_result(value)
        return value
    finally:
        del _in_flight[key]
