import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from limits import parse

from milepost_common import ratelimit
from milepost_common.errors import RateLimited
from milepost_common.ratelimit import MAX_LEASE, LoginThrottle, RateLimiter, lease_size
from milepost_common.settings import CommonSettings


@pytest.fixture
async def limiter(settings_factory, redis) -> AsyncIterator[RateLimiter]:
    limiter = RateLimiter(settings_factory(CommonSettings).redis.cache_url)
    yield limiter
    await limiter.aclose()


async def test_over_the_limit_is_429_with_headers(limiter: RateLimiter) -> None:
    who = uuid.uuid4().hex
    for _ in range(3):
        assert await limiter.enforce("3/minute", "test", who)
    with pytest.raises(RateLimited) as info:
        await limiter.enforce("3/minute", "test", who)
    assert info.value.status_code == 429
    assert int(info.value.headers["Retry-After"]) >= 1
    assert info.value.headers["RateLimit-Remaining"] == "0"


async def test_fails_open_when_redis_is_down() -> None:
    limiter = RateLimiter("redis://127.0.0.1:1/0")
    for _ in range(5):
        assert not await limiter.enforce("1/minute", "test", "anyone")
    await limiter.aclose()


class TestLoginThrottle:
    async def test_attempts_are_counted_before_the_block_and_kept_when_it_fails(
        self, limiter: RateLimiter
    ) -> None:
        throttle = LoginThrottle(limiter, 2)
        email = f"{uuid.uuid4().hex}@example.com"
        for ip in ("10.0.0.1", "10.0.0.2"):
            with pytest.raises(LookupError):
                async with throttle.attempt(email, ip):
                    raise LookupError("wrong password")

        with pytest.raises(RateLimited) as refused:
            async with throttle.attempt(email, "10.0.0.3"):
                pytest.fail("a third attempt ran")
        assert 1 <= refused.value.retry_after_s <= 60
        async with throttle.attempt(f"other-{email}", "10.0.0.3"):
            pass

    async def test_a_successful_attempt_is_released(self, limiter: RateLimiter) -> None:
        throttle = LoginThrottle(limiter, 2)
        email = f"{uuid.uuid4().hex}@example.com"
        for _ in range(5):
            async with throttle.attempt(email, "10.0.0.1"):
                pass

        with pytest.raises(LookupError):
            async with throttle.attempt(email, "10.0.0.1"):
                raise LookupError("still two attempts left before this one")

    async def test_spaces_and_case_share_one_bucket(self, limiter: RateLimiter) -> None:
        throttle = LoginThrottle(limiter, 1)
        with pytest.raises(LookupError):
            async with throttle.attempt("owner@x", "10.0.0.1"):
                raise LookupError

        with pytest.raises(RateLimited):
            async with throttle.attempt(" Owner@X ", "10.0.0.2"):
                pass

    async def test_concurrent_attempts_of_two_processes_never_pass_the_limit(
        self, settings_factory: Any, redis: Any
    ) -> None:
        url = settings_factory(CommonSettings).redis.cache_url
        processes = [RateLimiter(url), RateLimiter(url)]  # two pools: two app processes
        throttles = [LoginThrottle(limiter, 7) for limiter in processes]
        email = f"{uuid.uuid4().hex}@example.com"
        admitted: list[int] = []

        async def one(index: int) -> None:
            with contextlib.suppress(RateLimited, LookupError):
                async with throttles[index % 2].attempt(email, f"10.0.1.{index}"):
                    admitted.append(index)
                    await asyncio.sleep(0.01)  # the password check
                    raise LookupError("wrong password")

        try:
            await asyncio.gather(*(one(i) for i in range(60)))
        finally:
            for limiter in processes:
                await limiter.aclose()

        assert len(admitted) == 7


class TestLeases:
    """A busy caller's hits are counted in Redis a lease at a time; the limit still holds
    across processes, within one lease per process (the module's documented tolerance)."""

    def test_a_lease_is_half_a_seconds_worth_and_small_limits_count_exactly(self) -> None:
        assert lease_size(parse("600/minute")) == 5
        assert lease_size(parse("10000000/minute")) == MAX_LEASE
        assert lease_size(parse("3/minute")) == 1
        assert lease_size(parse("119/minute")) == 1

    async def test_a_busy_caller_costs_one_round_trip_per_lease(
        self, limiter: RateLimiter, redis: Any
    ) -> None:
        who = uuid.uuid4().hex
        rate = "6000/minute"  # 100/s: leases of 50
        for _ in range(120):
            assert await limiter.enforce(rate, "test", who)
        # Redis counted whole leases ahead of the requests, never fewer hits than were let
        # through: three leases of 50 for 120 requests.
        assert await _counted(limiter, rate, who) == 150

    async def test_the_limit_holds_across_processes_within_one_lease_each(
        self, settings_factory: Any, redis: Any
    ) -> None:
        url = settings_factory(CommonSettings).redis.cache_url
        processes = [RateLimiter(url), RateLimiter(url)]
        who = uuid.uuid4().hex
        rate = "300/minute"  # 5/s: leases of 2
        admitted = 0

        async def caller(limiter: RateLimiter) -> None:
            nonlocal admitted
            for _ in range(200):
                with contextlib.suppress(RateLimited):
                    await limiter.enforce(rate, "test", who)
                    admitted += 1

        try:
            await asyncio.gather(*(caller(p) for _ in range(8) for p in processes))
        finally:
            for limiter in processes:
                await limiter.aclose()
        # Never above the limit; below it by at most the unused hits of one lease each.
        assert 300 - 2 * (lease_size(parse(rate)) - 1) <= admitted <= 300

    async def test_concurrent_requests_share_one_lease(self, limiter: RateLimiter) -> None:
        who = uuid.uuid4().hex
        rate = "6000/minute"
        await asyncio.gather(*(limiter.enforce(rate, "test", who) for _ in range(50)))
        assert await _counted(limiter, rate, who) == 50

    async def test_a_lease_expires(self, limiter: RateLimiter, monkeypatch: Any) -> None:
        who = uuid.uuid4().hex
        rate = "6000/minute"
        monkeypatch.setattr(ratelimit, "LEASE_S", 0.0)
        assert await limiter.enforce(rate, "test", who)
        assert await limiter.enforce(rate, "test", who)
        assert await _counted(limiter, rate, who) == 100


async def _counted(limiter: RateLimiter, rate: str, who: str) -> int:
    """The hits Redis holds for the caller in the current window."""
    item = parse(rate)
    stats = await limiter._limiter.get_window_stats(item, "test", who)
    return item.amount - stats.remaining
