from __future__ import annotations

import asyncio
import gzip
from typing import Any

from redis.asyncio import Redis
from starlette.requests import Request

from milepost_api import cache as cache_module
from milepost_api.cache import Cached, ResponseCache
from milepost_api.http_cache import etag_of


def responses(redis: Redis) -> ResponseCache:
    return ResponseCache(redis, local_ttl_s=60)


class TestCached:
    async def test_a_miss_is_computed_once_for_concurrent_requests(self, redis: Redis) -> None:
        calls = 0

        async def compute() -> bytes:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.05)
            return b"report"

        cache = responses(redis)
        answers = await asyncio.gather(*(cache.cached("k", 10, compute) for _ in range(20)))

        assert {answer.body for answer in answers} == {b"report"}
        assert calls == 1
        # The body with its ETag in front, so a hit hashes nothing.
        assert await redis.get("k") == etag_of(b"report").encode() + b"\n" + b"report"

    async def test_waiters_recompute_when_the_first_request_is_cancelled(
        self, redis: Redis
    ) -> None:
        calls = 0

        async def compute() -> bytes:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.05)
            return b"fresh"

        cache = responses(redis)
        first = asyncio.create_task(cache.cached("k", 10, compute))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(cache.cached("k", 10, compute))
        await asyncio.sleep(0.01)
        first.cancel()

        assert (await second).body == b"fresh"
        assert calls == 2

    async def test_another_process_sees_the_entry_and_a_dropped_key_is_recomputed(
        self, redis: Redis
    ) -> None:
        versions = iter([b"v1", b"v2"])

        async def compute() -> bytes:
            return next(versions)

        one, other = responses(redis), responses(redis)
        assert (await one.cached("k", 10, compute)).body == b"v1"
        assert await other.cached("k", 10, compute) == Cached.of(b"v1")
        await redis.delete("k")  # what the worker does on a position event
        assert (await other.cached("k", 10, compute)).body == b"v2"
        # The first process's own copy is v1, but Redis names v2's ETag now.
        assert (await one.cached("k", 10, compute)).body == b"v2"

    async def test_a_body_not_in_redis_any_more_is_never_served_from_the_local_copy(
        self, redis: Redis
    ) -> None:
        cache = responses(redis)

        async def compute() -> bytes:
            return b"old"

        await cache.cached("k", 10, compute)
        await redis.set("k", Cached.of(b"new").entry())
        assert (await cache.cached("k", 10, compute)).body == b"new"

    async def test_an_answer_too_large_to_keep_is_served_and_computed_again(
        self, redis: Redis
    ) -> None:
        bodies = iter([b"x" * 11, b"y" * 11, b"small"])

        async def compute() -> bytes:
            return next(bodies)

        cache = ResponseCache(redis, local_ttl_s=60, max_body_bytes=10)
        assert (await cache.cached("k", 10, compute)).body == b"x" * 11
        assert await redis.exists("k") == 0
        assert (await cache.cached("k", 10, compute)).body == b"y" * 11
        # One that fits is kept as before.
        assert (await cache.cached("k", 10, compute)).body == b"small"
        assert (await cache.cached("k", 10, compute)).body == b"small"

    async def test_redis_down_computes_every_time(self) -> None:
        cache = responses(Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2))

        async def compute() -> bytes:
            return b"from the database"

        assert (await cache.cached("k", 10, compute)).body == b"from the database"
        await cache.redis.aclose()


class TestResponse:
    async def test_the_body_is_compressed_once_per_version(
        self, redis: Redis, monkeypatch: Any
    ) -> None:
        cache = responses(redis)
        compressions = 0
        real = cache_module.gzip.compress

        def counted(data: bytes, **options: Any) -> bytes:
            nonlocal compressions
            compressions += 1
            return real(data, **options)

        monkeypatch.setattr(cache_module.gzip, "compress", counted)
        body = b'{"items": [' + b",".join(b'{"n": %d}' % n for n in range(500)) + b"]}"
        value = Cached.of(body)
        for _ in range(5):
            response = await cache.response(_request(b"gzip, deflate"), value, "application/json")
            assert gzip.decompress(response.body) == body
            assert response.headers["Content-Encoding"] == "gzip"
            assert response.headers["ETag"] == value.etag
        assert compressions == 1
        plain = await cache.response(_request(b"identity"), value, "application/json")
        assert plain.body == body
        assert "Content-Encoding" not in plain.headers

    async def test_a_large_body_is_compressed_while_other_requests_go_on(
        self, redis: Redis
    ) -> None:
        cache = ResponseCache(redis, local_ttl_s=60, max_body_bytes=1024 * 1024)
        body = b"[" + b",".join(b'{"n": %d}' % n for n in range(200_000)) + b"]"
        assert len(body) >= cache_module.GZIP_IN_THREAD_BYTES
        value, turns = Cached.of(body), 0

        async def another_request() -> None:
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        other = asyncio.create_task(another_request())
        await asyncio.sleep(0)
        turns = 0
        response = await cache.response(_request(b"gzip"), value, "application/json")
        other.cancel()

        assert gzip.decompress(response.body) == body
        assert turns > 0
        # Over `max_body_bytes`: not kept, so not a copy of it per version either.
        assert cache._gzipped.get(value.etag) is None

    async def test_a_representation_too_large_to_keep_is_made_each_time(self, redis: Redis) -> None:
        cache = ResponseCache(redis, local_ttl_s=60, max_body_bytes=10)
        made = 0

        def grown(body: bytes) -> bytes:
            nonlocal made
            made += 1
            return body * 2

        small, large = Cached.of(b"abc"), Cached.of(b"abcdef")
        for _ in range(2):
            assert cache.variant(small, "twice", grown).body == b"abcabc"
            assert cache.variant(large, "twice", grown).body == b"abcdefabcdef"  # 12 bytes

        assert made == 3  # the small one once, the large one every time


def _request(accept_encoding: bytes) -> Request:
    return Request(
        {"type": "http", "method": "GET", "headers": [(b"accept-encoding", accept_encoding)]}
    )
