import time

import orjson
from redis.asyncio import Redis

from milepost_common.settings import CelerySettings, RedisSettings
from milepost_common.tasks import INGEST_BATCHES_PROCESS, QUEUE_PROCESSING, Publisher


async def test_publishes_by_name_to_the_task_queue(redis_url: str, redis: Redis) -> None:
    publisher = Publisher(RedisSettings(url=redis_url), CelerySettings())
    try:
        assert await publisher.send(INGEST_BATCHES_PROCESS, "batch-1")
    finally:
        publisher.close()
    broker = Redis.from_url(redis_url)
    try:
        message = orjson.loads(await broker.lpop(QUEUE_PROCESSING))  # type: ignore[arg-type]
    finally:
        await broker.aclose()
    assert message["headers"]["task"] == INGEST_BATCHES_PROCESS
    assert message["headers"]["expires"] is not None


async def test_dead_broker_returns_false_quickly() -> None:
    publisher = Publisher(
        RedisSettings(url="redis://127.0.0.1:1/0", socket_timeout_s=0.5),
        CelerySettings(publish_timeout_s=1.0),
    )
    started = time.monotonic()
    try:
        assert not await publisher.send(INGEST_BATCHES_PROCESS, "batch-1")
    finally:
        publisher.close()
    assert time.monotonic() - started < 2.0
