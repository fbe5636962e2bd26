"""The heartbeat's liveness key, in-process."""

from __future__ import annotations

import orjson
from redis.asyncio import Redis

from milepost_worker.handlers import system
from milepost_worker.health import HEARTBEAT_KEY
from milepost_worker.runtime import WorkerContext


class TestHeartbeat:
    async def test_heartbeat_key_is_fresh(self, ctx: WorkerContext, redis: Redis) -> None:
        await system.beat_heartbeat(ctx, "host-1", {"processing": 3})
        raw = await redis.get(HEARTBEAT_KEY)
        assert raw is not None
        value = orjson.loads(raw)
        assert (value["hostname"], value["queues"]) == ("host-1", {"processing": 3})
        assert await redis.ttl(HEARTBEAT_KEY) > 0
