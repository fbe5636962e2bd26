"""The kit's TTL cache: expiry (its own and shorter per entry), nothing kept at zero, the
bound, loads whose errors are not kept."""

from __future__ import annotations

import asyncio

import pytest

from milepost_common import cache as cache_module
from milepost_common.cache import TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(cache_module.time, "monotonic", clock)
    return clock


class TestGet:
    def test_a_value_is_kept_for_the_time_to_live(self, clock: Clock) -> None:
        cache: TtlCache[str, int] = TtlCache(10)
        cache.put("a", 1)
        clock.now += 9.9
        assert cache.get("a") == 1
        clock.now += 0.1
        assert cache.get("a") is None

    def test_an_entry_may_expire_sooner_never_later(self, clock: Clock) -> None:
        cache: TtlCache[str, int] = TtlCache(10)
        cache.put("short", 1, ttl_s=2)
        cache.put("long", 2, ttl_s=60)
        clock.now += 5
        assert cache.get("short") is None
        assert cache.get("long") == 2
        clock.now += 5
        assert cache.get("long") is None

    def test_zero_time_to_live_keeps_nothing(self, clock: Clock) -> None:
        cache: TtlCache[str, int] = TtlCache(0)
        cache.put("a", 1)
        assert cache.get("a") is None
        assert len(cache) == 0
        expired: TtlCache[str, int] = TtlCache(10)
        expired.put("a", 1, ttl_s=0)
        assert expired.get("a") is None

    def test_a_full_cache_starts_over(self, clock: Clock) -> None:
        cache: TtlCache[int, int] = TtlCache(10, max_entries=2)
        cache.put(1, 1)
        cache.put(2, 2)
        cache.put(2, 20)  # a key already kept is replaced in place
        assert len(cache) == 2
        cache.put(3, 3)
        assert (cache.get(1), cache.get(2), cache.get(3)) == (None, None, 3)

    def test_clear_forgets_everything(self, clock: Clock) -> None:
        cache: TtlCache[str, int] = TtlCache(10)
        cache.put("a", 1)
        cache.clear()
        assert cache.get("a") is None


class TestGetOrLoad:
    async def test_loads_once_until_expired(self, clock: Clock) -> None:
        cache: TtlCache[str, int] = TtlCache(10)
        loads = 0

        async def load() -> int:
            nonlocal loads
            loads += 1
            return loads

        assert await cache.get_or_load("a", load) == 1
        assert await cache.get_or_load("a", load) == 1
        clock.now += 10
        assert await cache.get_or_load("a", load) == 2

    async def test_an_error_is_not_kept(self, clock: Clock) -> None:
        cache: TtlCache[str, int] = TtlCache(10)

        async def fail() -> int:
            raise LookupError

        async def load() -> int:
            return 7

        with pytest.raises(LookupError):
            await cache.get_or_load("a", fail)
        assert await cache.get_or_load("a", load) == 7


class TestSingleFlight:
    async def test_concurrent_misses_load_once(self) -> None:
        cache: TtlCache[str, int] = TtlCache(10)
        loads = 0

        async def load() -> int:
            nonlocal loads
            loads += 1
            await asyncio.sleep(0.02)
            return 7

        assert await asyncio.gather(*(cache.get_or_load("a", load) for _ in range(20))) == [7] * 20
        assert loads == 1

    async def test_waiters_share_the_error_and_nothing_is_kept(self) -> None:
        cache: TtlCache[str, int] = TtlCache(10)

        async def fail() -> int:
            await asyncio.sleep(0.02)
            raise LookupError

        results = await asyncio.gather(
            *(cache.get_or_load("a", fail) for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(result, LookupError) for result in results)
        assert cache.get("a") is None

    async def test_a_waiter_loads_again_when_the_loader_is_cancelled(self) -> None:
        cache: TtlCache[str, int] = TtlCache(10)

        async def load() -> int:
            await asyncio.sleep(0.05)
            return 7

        first = asyncio.create_task(cache.get_or_load("a", load))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(cache.get_or_load("a", load))
        await asyncio.sleep(0.01)
        first.cancel()
        assert await second == 7

    async def test_the_time_to_live_may_come_from_the_value(self, clock: Clock) -> None:
        cache: TtlCache[str, int] = TtlCache(10)

        async def load() -> int:
            return 3

        await cache.get_or_load("a", load, ttl_of=lambda value: value)
        clock.now += 3
        assert cache.get("a") is None
