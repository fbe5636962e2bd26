import uuid
from collections.abc import AsyncIterator

import pytest

from milepost_common.errors import RateLimited
from milepost_common.ratelimit import LoginThrottle, RateLimiter
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


async def test_login_throttle_counts_failures_per_email(limiter: RateLimiter) -> None:
    throttle = LoginThrottle(limiter, 2)
    email = f"{uuid.uuid4().hex}@example.com"
    await throttle.check(email, "10.0.0.1")
    await throttle.failed(email, "10.0.0.1")
    await throttle.failed(email, "10.0.0.1")
    with pytest.raises(RateLimited):
        await throttle.check(email.upper(), "10.0.0.2")
    await throttle.check(f"other-{email}", "10.0.0.3")
