"""System status: queue depths, worker heartbeats, ingest rate, lag, database, partitions."""

from __future__ import annotations

import time

import httpx
import orjson
from admin_support import Staff
from redis.asyncio import Redis

from milepost_common.tasks import WORKER_HEARTBEAT_PREFIX


class TestGetSystemStatus:
    async def test_reports_queues_workers_and_partitions(
        self, client: httpx.AsyncClient, staff: Staff, redis: Redis, redis_url: str
    ) -> None:
        broker = Redis.from_url(redis_url)
        try:
            await broker.rpush("processing", "m1", "m2")
            await broker.set(
                WORKER_HEARTBEAT_PREFIX + "worker@host", orjson.dumps({"at": time.time() - 5})
            )
            await broker.set(WORKER_HEARTBEAT_PREFIX + "old@host", orjson.dumps({"at": 1000.0}))

            response = await client.get("/admin/v1/system/status", headers=staff.support_auth)
        finally:
            await broker.flushdb()
            await broker.aclose()

        assert response.status_code == 200
        body = response.json()
        assert {q["name"]: q["depth"] for q in body["queues"]}["processing"] == 2
        workers = {w["name"]: w["alive"] for w in body["workers"]}
        assert workers == {"old@host": False, "worker@host": True}
        assert body["database_bytes"] > 0
        assert body["positions_partitions"]["count"] > 0
        assert body["positions_partitions"]["days_ahead"] >= 2
        assert body["ingest"]["window_minutes"] == 15
        assert body["processing"]["lag_s"] >= 0

    async def test_ingest_series_has_every_minute(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        response = await client.get("/admin/v1/system/ingest-series", headers=staff.support_auth)

        assert response.status_code == 200
        assert len(response.json()) == 60
