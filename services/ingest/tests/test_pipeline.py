"""The write path around the database and the broker: commit, then publish, then `queued`;
the broker down (202, `received`), Postgres down (503, nothing written), one
Idempotency-Key sent concurrently (one batch), metrics and the log line of a batch."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from sqlalchemy import func, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.db import Database, create_database, unit_of_work
from milepost_common.domain.devices.models import Device
from milepost_common.domain.ingest_batches.models import IngestBatch
from milepost_common.domain.positions.models import Position
from milepost_common.settings import DbSettings
from milepost_common.tasks import INGEST_BATCHES_PROCESS, QUEUE_PROCESSING
from milepost_common.testing.factories import make_api_key, make_device, make_organization
from milepost_common.testing.plugin import app_client
from milepost_ingest.main import create_app
from milepost_ingest.settings import IngestSettings

URL = "/ingest/v1/positions"
DEAD_POSTGRES = "postgresql://postgres@127.0.0.1:1/nowhere"
DEAD_REDIS = "redis://127.0.0.1:1/0"
Fix = Callable[..., dict[str, Any]]
Fixes = Callable[..., list[dict[str, Any]]]
Settings = Callable[..., IngestSettings]


async def batch_status(session: AsyncSession, batch_id: str) -> str:
    query = select(IngestBatch.status).where(col(IngestBatch.id) == uuid.UUID(batch_id))
    status: str = (await session.execute(query)).scalar_one()
    return status


def dead_database() -> Database:
    return create_database(DbSettings(url=DEAD_POSTGRES, connect_timeout_s=1))


class TestEnqueue:
    async def test_committed_batch_is_published_and_queued(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        device: Device,
        fixes: Fixes,
        session: AsyncSession,
        redis_url: str,
    ) -> None:
        response = await client.post(URL, json={"positions": fixes(device, 2)}, headers=auth)
        batch_id = response.json()["batch_id"]
        assert await batch_status(session, batch_id) == "queued"
        broker = Redis.from_url(redis_url)
        try:
            messages = [json.loads(m) for m in await broker.lrange(QUEUE_PROCESSING, 0, -1)]
        finally:
            await broker.aclose()
        assert [m["headers"]["task"] for m in messages] == [INGEST_BATCHES_PROCESS]
        args, _kwargs, _embed = json.loads(base64.b64decode(messages[0]["body"]))
        assert args == [batch_id]

    async def test_broker_down_still_accepts_and_leaves_the_batch_received(
        self,
        make_settings: Settings,
        database: Database,
        auth: dict[str, str],
        device: Device,
        fixes: Fixes,
        session: AsyncSession,
    ) -> None:
        settings = make_settings(redis={"url": DEAD_REDIS}, celery={"publish_timeout_s": 1.0})
        async with app_client(create_app(settings), database) as client:
            response = await client.post(URL, json={"positions": fixes(device, 3)}, headers=auth)
        assert response.status_code == 202  # rate limit failed open, publish failed
        assert response.json()["accepted"] == 3
        assert await batch_status(session, response.json()["batch_id"]) == "received"


class TestPostgresDown:
    async def test_key_lookup_without_postgres_is_503(
        self, make_settings: Settings, redis: Redis, api_key: Any
    ) -> None:
        settings = make_settings(db={"url": DEAD_POSTGRES, "connect_timeout_s": 1})
        async with app_client(create_app(settings)) as client:
            response = await client.post(
                URL, json={"positions": []}, headers={"X-API-Key": api_key.secret}
            )
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "unavailable"
        assert int(response.headers["Retry-After"]) > 0

    async def test_write_without_postgres_is_503_and_writes_nothing(
        self,
        make_settings: Settings,
        database: Database,
        redis: Redis,
        auth: dict[str, str],
        device: Device,
        fixes: Fixes,
        session: AsyncSession,
    ) -> None:
        app = create_app(make_settings(auth={"principal_cache_s": 60}))
        async with app_client(app, database) as client:
            # The key and the organization's filters are now cached: only the write needs
            # Postgres.
            warm = await client.post(URL, json={"positions": fixes(device, 1)}, headers=auth)
            assert warm.status_code == 202
            app.state.db = dead_database()
            try:
                start = datetime.now(UTC) - timedelta(minutes=30)
                response = await client.post(
                    URL, json={"positions": fixes(device, 5, start)}, headers=auth
                )
            finally:
                await app.state.db.dispose()
                app.state.db = database
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "unavailable"
        assert "Retry-After" in response.headers
        assert await session.scalar(select(func.count()).select_from(IngestBatch)) == 1
        assert await session.scalar(select(func.count()).select_from(Position)) == 1

    async def test_a_stale_partition_window_is_503_then_refreshed(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        device: Device,
        fix: Fix,
        session: AsyncSession,
    ) -> None:
        warm = await client.post(URL, json={"positions": [fix(device)]}, headers=auth)
        assert warm.status_code == 202  # the partition window is cached now
        oldest = await session.scalar(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'positions'::regclass ORDER BY c.relname LIMIT 1"
            )
        )
        assert oldest is not None
        day = datetime.strptime(oldest.removeprefix("positions_p"), "%Y%m%d").replace(tzinfo=UTC)
        await session.execute(text(f'ALTER TABLE positions DETACH PARTITION "{oldest}"'))
        lost_day = [fix(device, day + timedelta(hours=12))]
        first = await client.post(URL, json={"positions": lost_day}, headers=auth)
        assert first.status_code == 503
        assert first.headers["Retry-After"] == "1"
        again = await client.post(URL, json={"positions": lost_day}, headers=auth)
        assert again.json()["errors"][0]["code"] == "fix_time_too_old"
        assert await session.scalar(select(func.count()).select_from(IngestBatch)) == 2


class TestConcurrentIdempotency:
    async def test_one_key_sent_concurrently_makes_one_batch(
        self, make_settings: Settings, committed_database: str, redis: Redis, fixes: Fixes
    ) -> None:
        db = create_database(DbSettings(url=committed_database))
        try:
            async with unit_of_work(db) as session:
                org = await make_organization(session)
                device = await make_device(session, org)
                key = await make_api_key(session, org)
            app = create_app(make_settings(db={"url": committed_database}))
            body = {"positions": fixes(device, 50)}
            headers = {"X-API-Key": key.secret, "Idempotency-Key": "same-push"}
            async with app_client(app) as client:
                responses = await asyncio.gather(
                    *(client.post(URL, json=body, headers=headers) for _ in range(4))
                )
            async with unit_of_work(db) as session:
                batches = await session.scalar(select(func.count()).select_from(IngestBatch))
                positions = await session.scalar(select(func.count()).select_from(Position))
        finally:
            await db.dispose()
        assert [r.status_code for r in responses] == [202] * 4
        assert len({r.json()["batch_id"] for r in responses}) == 1
        assert sum("Idempotent-Replayed" not in r.headers for r in responses) == 1
        assert {r.json()["accepted"] for r in responses} == {50}
        assert (batches, positions) == (1, 50)


class TestObservability:
    async def test_counters_and_one_log_line_per_batch(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        api_key: Any,
        device: Device,
        fixes: Fixes,
        fix: Fix,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        def sample(name: str, **labels: str) -> float:
            return REGISTRY.get_sample_value(name, labels) or 0.0

        before = (
            sample("milepost_ingest_fixes_accepted_total", source="json"),
            sample("milepost_ingest_fixes_rejected_total", source="json", code="unknown_device"),
            sample("milepost_ingest_fixes_duplicate_total", source="json"),
            sample("milepost_ingest_batch_items_count", source="json"),
        )
        items = fixes(device, 2)
        response = await client.post(
            URL, json={"positions": [*items, items[0], fix("nobody")]}, headers=auth
        )
        after = (
            sample("milepost_ingest_fixes_accepted_total", source="json"),
            sample("milepost_ingest_fixes_rejected_total", source="json", code="unknown_device"),
            sample("milepost_ingest_fixes_duplicate_total", source="json"),
            sample("milepost_ingest_batch_items_count", source="json"),
        )
        assert [b - a for a, b in zip(before, after, strict=True)] == [2, 1, 1, 1]
        lines = [r.msg for r in caplog.records if isinstance(r.msg, dict)]
        batch_lines = [line for line in lines if line.get("event") == "ingest_batch"]
        assert len(batch_lines) == 1
        line = batch_lines[0]
        assert line["batch_id"] == response.json()["batch_id"]
        assert line["org_id"] == str(device.org_id)
        assert line["key_prefix"] == api_key.api_key.prefix
        assert (line["items"], line["accepted"], line["rejected"], line["duplicates"]) == (
            4,
            2,
            1,
            1,
        )
        metrics = await client.get("/metrics")
        assert "milepost_ingest_batch_duration_seconds_bucket" in metrics.text
