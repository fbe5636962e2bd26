"""Hits served without Redis while Redis reports every change (CLIENT TRACKING, BCAST)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_api import cache as cache_module
from milepost_api.cache import Cached, KeyTracker, ResponseCache
from milepost_common.testing.factories import make_device, make_device_state
from services.api.tests.api_support import Bearer, Team

PREFIX = "test:cache:"
KEY = f"{PREFIX}k"
TTL_S = 10
WAIT_S = 2.0


async def eventually(condition: Callable[[], Awaitable[bool]]) -> None:
    """Polls ``condition`` until true; fails after WAIT_S (a report is pushed asynchronously)."""
    deadline = time.monotonic() + WAIT_S
    while not await condition():
        assert time.monotonic() < deadline, "not within the wait"
        await asyncio.sleep(0.01)


_sent: list[str] = []


@pytest.fixture(autouse=True)
def counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command this process's clients send is noted (the app's included): counted
    here rather than from the server's statistics, which a shared server would blur."""
    send = Redis.execute_command

    async def noted(self: Redis, *args: Any, **options: Any) -> Any:
        _sent.append(str(args[0]).upper())
        return await send(self, *args, **options)

    _sent.clear()
    monkeypatch.setattr(Redis, "execute_command", noted)


def reads() -> int:
    """GETRANGE and GET calls sent so far (any of this process's clients)."""
    return sum(command in ("GET", "GETRANGE") for command in _sent)


async def set_entry(redis: Redis, body: bytes, key: str = KEY) -> None:
    await redis.set(key, Cached.of(body).entry(), ex=TTL_S)


async def trusted(cache: ResponseCache, key: str = KEY, ttl_s: int = TTL_S) -> Cached | None:
    """Reads ``key`` until the answer came without asking Redis, and returns it."""
    value: Cached | None = None

    async def served_locally() -> bool:
        nonlocal value
        before = reads()
        value = await cache.get(key, ttl_s)
        return reads() == before

    await eventually(served_locally)
    return value


async def asks_redis(cache: ResponseCache, key: str) -> bool:
    before = reads()
    await cache.get(key, TTL_S)
    return reads() > before


async def settle(cache: ResponseCache, redis: Redis) -> None:
    """Returns once every change made so far has been reported to the cache's tracker:
    reports come in order, and a sentinel written last is seen changed."""
    sentinel = f"{PREFIX}sentinel"
    await set_entry(redis, b"s", key=sentinel)
    await trusted(cache, sentinel)
    await redis.delete(sentinel)
    await eventually(lambda: asks_redis(cache, sentinel))


@asynccontextmanager
async def started(redis: Redis) -> AsyncIterator[KeyTracker]:
    tracker = KeyTracker(redis, (PREFIX,))
    tracker.start()

    async def live() -> bool:
        return tracker.live

    try:
        await eventually(live)
        yield tracker
    finally:
        await tracker.stop()


@pytest.fixture
async def tracker(redis: Redis) -> AsyncIterator[KeyTracker]:
    async with started(redis) as tracker:
        yield tracker


@pytest.fixture
def cache(redis: Redis, tracker: KeyTracker) -> ResponseCache:
    return ResponseCache(redis, local_ttl_s=60, tracker=tracker)


class TestHits:
    async def test_a_trusted_copy_is_served_without_redis(
        self, cache: ResponseCache, redis: Redis
    ) -> None:
        await set_entry(redis, b"v1")
        assert await trusted(cache) == Cached.of(b"v1")

        before = reads()
        answers = [await cache.get(KEY, TTL_S) for _ in range(20)]

        assert reads() == before
        assert {answer.body for answer in answers if answer} == {b"v1"}
        assert len(answers) == 20

    async def test_a_copy_is_not_trusted_past_the_entrys_time_to_live(
        self, cache: ResponseCache, redis: Redis
    ) -> None:
        await set_entry(redis, b"v1")
        await trusted(cache, ttl_s=1)
        await asyncio.sleep(1.1)

        before = reads()
        assert (await cache.get(KEY, 1)) == Cached.of(b"v1")
        assert reads() > before

    async def test_keys_redis_does_not_report_are_checked_on_every_read(
        self, cache: ResponseCache, redis: Redis
    ) -> None:
        await set_entry(redis, b"v1", key="elsewhere")
        await cache.get("elsewhere", TTL_S)

        before = reads()
        assert (await cache.get("elsewhere", TTL_S)) == Cached.of(b"v1")
        assert reads() > before


class TestChanges:
    async def test_a_drop_by_the_worker_is_seen(self, cache: ResponseCache, redis: Redis) -> None:
        await set_entry(redis, b"v1")
        await trusted(cache)

        await redis.delete(KEY)  # what the worker does on a position event

        async def dropped() -> bool:
            return await cache.get(KEY, TTL_S) is None

        await eventually(dropped)
        assert [await cache.get(KEY, TTL_S) for _ in range(5)] == [None] * 5

    async def test_a_new_entry_written_by_another_process_is_seen(
        self, cache: ResponseCache, redis: Redis
    ) -> None:
        await set_entry(redis, b"v1")
        await trusted(cache)

        await set_entry(redis, b"v2")

        async def replaced() -> bool:
            return await cache.get(KEY, TTL_S) == Cached.of(b"v2")

        await eventually(replaced)
        assert {await cache.get(KEY, TTL_S) for _ in range(5)} == {Cached.of(b"v2")}

    async def test_a_change_reported_during_a_read_leaves_its_answer_untrusted(
        self, redis: Redis, tracker: KeyTracker
    ) -> None:
        racing = RacingRedis(redis)
        cache = ResponseCache(racing, local_ttl_s=60, tracker=tracker)  # type: ignore[arg-type]
        await set_entry(redis, b"v1")
        await settle(cache, redis)

        async def write_v2_and_wait_for_its_report() -> None:
            await set_entry(redis, b"v2")
            await settle(cache, redis)

        # The answer v1 is read, then v2 written and reported before the read finishes.
        racing.after_get = write_v2_and_wait_for_its_report
        assert await cache.get(KEY, TTL_S) == Cached.of(b"v1")  # current when it was read

        assert await cache.get(KEY, TTL_S) == Cached.of(b"v2")

    async def test_a_flush_drops_every_copy(self, cache: ResponseCache, redis: Redis) -> None:
        second = f"{PREFIX}second"
        await set_entry(redis, b"v1")
        await set_entry(redis, b"w1", key=second)
        await trusted(cache)
        await trusted(cache, second)

        await redis.flushdb()

        async def both_dropped() -> bool:
            return (await cache.get(KEY, TTL_S), await cache.get(second, TTL_S)) == (None, None)

        await eventually(both_dropped)


class TestManyKeys:
    async def test_each_of_many_organizations_keeps_its_copy(
        self, cache: ResponseCache, redis: Redis
    ) -> None:
        """A process serving 200 organizations' latest positions keeps every copy (a store
        that empties itself at a count would send each read to Redis again)."""
        keys = [f"{PREFIX}org-{n}" for n in range(200)]
        for key in keys:
            await set_entry(redis, key.encode(), key=key)
            await trusted(cache, key)

        before = reads()
        answers = [await cache.get(key, TTL_S) for key in keys]

        assert reads() == before
        assert [a.body for a in answers if a] == [key.encode() for key in keys]

    async def test_past_its_bytes_the_least_recently_read_copy_goes(
        self, redis: Redis, tracker: KeyTracker
    ) -> None:
        cache = ResponseCache(redis, local_ttl_s=60, tracker=tracker, local_bytes=3 * 1000)
        first, second, third, fourth = (f"{PREFIX}{n}" for n in "abcd")
        for key in (first, second, third):
            await set_entry(redis, key[-1].encode() * 1000, key=key)
            await trusted(cache, key)
        await trusted(cache, first)  # read again: now the most recent

        await set_entry(redis, b"d" * 900, key=fourth)
        await trusted(cache, fourth)

        assert not await asks_redis(cache, first)
        assert not await asks_redis(cache, third)
        assert await asks_redis(cache, second)  # the one gone (read back, it pushes another)


class TestTheApp:
    async def test_latest_positions_are_served_without_redis(
        self,
        api_app: FastAPI,
        client: httpx.AsyncClient,
        redis: Redis,
        session: AsyncSession,
        team: Team,
        bearer: Bearer,
    ) -> None:
        device = await make_device(session, team.org)
        moment = datetime(2025, 1, 1, tzinfo=UTC)
        await make_device_state(session, device, last_fix_time=moment, last_lat=1.0, last_lon=2.0)
        tracker: KeyTracker = api_app.state.ctx.responses.tracker

        async def live() -> bool:
            return tracker.live

        async def served_locally() -> bool:
            before = reads()
            answer = await client.get("/api/v1/positions/latest", headers=bearer(team.viewer))
            assert answer.json()["items"][0]["lat"] == 1.0
            return reads() == before

        await eventually(live)
        await eventually(served_locally)


class TestConnectionLoss:
    async def test_reads_check_redis_until_the_tracker_is_back(
        self, redis: Redis, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Long enough a pause before reconnecting to watch the reads meanwhile.
        monkeypatch.setattr(cache_module, "RETRY_FIRST_S", 1.0)
        async with started(redis) as tracker:
            cache = ResponseCache(redis, local_ttl_s=60, tracker=tracker)
            await set_entry(redis, b"v1")
            await trusted(cache)

            await kill_clients_named(redis, tracker.client_name)

            await eventually(lambda: asks_redis(cache, KEY))
            assert not tracker.live
            for _ in range(3):
                before = reads()
                assert await cache.get(KEY, TTL_S) == Cached.of(b"v1")
                assert reads() > before

            async def live() -> bool:
                return tracker.live

            await eventually(live)
            assert await trusted(cache) == Cached.of(b"v1")
            await set_entry(redis, b"v2")  # and changes are reported on the new connection

            async def replaced() -> bool:
                return await cache.get(KEY, TTL_S) == Cached.of(b"v2")

            await eventually(replaced)

    async def test_the_tracking_connection_is_named_for_operators(
        self, redis: Redis, tracker: KeyTracker
    ) -> None:
        named = [c for c in await redis.client_list() if c["name"] == tracker.client_name]

        assert tracker.client_name.startswith("milepost-api-cache:")
        # Subscribed (P), tracking (t), in broadcast mode (B). Another may share the name:
        # the session's api app, in this same process.
        assert named
        assert all({"P", "t", "B"} <= set(client["flags"]) for client in named)


async def kill_clients_named(redis: Redis, name: str) -> None:
    for client in await redis.client_list():
        if client["name"] == name:
            await redis.client_kill_filter(_id=client["id"])


class RacingRedis:
    """The cache's Redis, running ``after_get`` once between a GET's answer and its return."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self.after_get: Callable[[], Awaitable[None]] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._redis, name)

    async def get(self, key: str) -> Any:
        hook, self.after_get = self.after_get, None
        value = await self._redis.get(key)
        if hook is not None:
            await hook()
        return value
