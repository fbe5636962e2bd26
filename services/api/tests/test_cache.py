from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from milepost_api import cache


class TestCached:
    async def test_a_miss_is_computed_once_for_concurrent_requests(self, redis: Redis) -> None:
        calls = 0

        async def compute() -> bytes:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.05)
            return b"report"

        answers = await asyncio.gather(*(cache.cached(redis, "k", 10, compute) for _ in range(20)))

        assert set(answers) == {b"report"}
        assert calls == 1
        assert await redis.get("k") == b"report"

    async def test_waiters_recompute_when_the_first_request_is_cancelled(
        self, redis: Redis
    ) -> None:
        calls = 0

        async def compute() -> bytes:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.05)
            return b"fresh"

        first = asyncio.create_task(cache.cached(redis, "k", 10, compute))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(cache.cached(redis, "k", 10, compute))
        await asyncio.sleep(0.01)
        first.cancel()

        assert await second == b"fresh"
        assert calls == 2
