"""Short Redis caching where it pays (latest positions, summaries). A cache never fails a
read: when Redis cannot answer, the database does."""

from __future__ import annotations

from redis.asyncio import Redis

from milepost_common.logging import get_logger

log = get_logger("milepost.api.cache")


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
