from collections.abc import Callable

from fastapi import FastAPI

from milepost_common.settings import CommonSettings
from milepost_common.testing.plugin import app_client

DEAD_REDIS = "redis://127.0.0.1:1/0"


async def test_health_and_ready(
    kit_settings: CommonSettings, kit_app_factory: Callable[..., FastAPI]
) -> None:
    async with app_client(kit_app_factory(kit_settings)) as client:
        assert (await client.get("/kit/health")).json() == {"status": "ok"}
        ready = await client.get("/kit/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok"}


async def test_not_ready_names_the_missing_dependency(
    settings_factory: Callable[..., CommonSettings], kit_app_factory: Callable[..., FastAPI]
) -> None:
    settings = settings_factory(CommonSettings, redis={"url": DEAD_REDIS, "socket_timeout_s": 0.5})
    async with app_client(kit_app_factory(settings)) as client:
        ready = await client.get("/kit/ready")
    assert ready.status_code == 503
    body = ready.json()
    assert body["error"]["code"] == "unavailable"
    assert "redis" in body["error"]["message"]
    assert body["checks"]["postgres"] == "ok"
    assert body["checks"]["redis"].startswith("unavailable")


async def test_app_without_redis_need_stays_ready(
    settings_factory: Callable[..., CommonSettings], kit_app_factory: Callable[..., FastAPI]
) -> None:
    settings = settings_factory(CommonSettings, redis={"url": DEAD_REDIS, "socket_timeout_s": 0.5})
    async with app_client(kit_app_factory(settings, redis_required=False)) as client:
        ready = await client.get("/kit/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"postgres": "ok"}
