"""``POST /ingest/v1/positions`` with an ``Idempotency-Key``: a repeat answers as the first
did and writes nothing."""

from __future__ import annotations

from datetime import timedelta

import httpx
import orjson
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain.devices.models import Device
from milepost_common.domain.ingest_batches.models import IngestBatch
from milepost_common.testing.factories import (
    make_api_key,
    make_organization,
)
from services.ingest.tests.routes.positions_support import (
    URL,
    Fix,
    Fixes,
    assert_error,
    batch_row,
    push,
    stored,
)


class TestIdempotency:
    async def test_same_key_and_body_replays_the_first_answer(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        device: Device,
        session: AsyncSession,
        fixes: Fixes,
        fix: Fix,
    ) -> None:
        items = [*fixes(device, 2), fix("unknown-one")]
        first = await push(client, auth, items, **{"Idempotency-Key": "push-0001"})
        again = await push(client, auth, items, **{"Idempotency-Key": "push-0001"})
        assert first.status_code == again.status_code == 202
        assert again.json() == first.json()
        assert again.headers["Idempotent-Replayed"] == "true"
        assert "Idempotent-Replayed" not in first.headers
        batches = await session.scalar(
            select(func.count()).where(col(IngestBatch.idempotency_key) == "push-0001")
        )
        assert batches == 1
        assert len(await stored(session, first.json()["batch_id"])) == 2

    async def test_replay_answers_the_first_counts_not_todays(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        device: Device,
        fixes: Fixes,
    ) -> None:
        items = fixes(device, 2)
        first = await push(client, auth, items, **{"Idempotency-Key": "k-2"})
        await push(client, auth, items)  # now every item is a duplicate
        again = await push(client, auth, items, **{"Idempotency-Key": "k-2"})
        assert again.json()["accepted"] == first.json()["accepted"] == 2

    async def test_same_key_other_body_is_a_conflict(
        self, client: httpx.AsyncClient, auth: dict[str, str], device: Device, fixes: Fixes
    ) -> None:
        items = fixes(device, 2)
        await push(client, auth, items, **{"Idempotency-Key": "k-3"})
        response = await push(client, auth, items[:1], **{"Idempotency-Key": "k-3"})
        assert_error(response, 409, "conflict")

    async def test_same_key_other_format_is_a_conflict(
        self, client: httpx.AsyncClient, auth: dict[str, str], device: Device, fixes: Fixes
    ) -> None:
        body = orjson.dumps({"positions": fixes(device, 1)})
        headers = {**auth, "Idempotency-Key": "k-4"}
        await client.post(
            URL,
            content=body,
            headers={**headers, "Content-Type": "application/x-ndjson"},
        )
        response = await client.post(
            URL,
            content=body,
            headers={**headers, "Content-Type": "application/json"},
        )
        assert_error(response, 409, "conflict")

    async def test_key_expires_after_a_day(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        device: Device,
        session: AsyncSession,
        fixes: Fixes,
    ) -> None:
        items = fixes(device, 2)
        first = await push(client, auth, items, **{"Idempotency-Key": "k-5"})
        old = await batch_row(session, first.json()["batch_id"])
        old.received_at -= timedelta(hours=24, seconds=1)
        session.add(old)
        await session.flush()
        again = await push(client, auth, items, **{"Idempotency-Key": "k-5"})
        assert again.status_code == 202
        assert "Idempotent-Replayed" not in again.headers
        assert again.json()["batch_id"] != first.json()["batch_id"]
        assert again.json()["duplicates"] == 2
        assert (await batch_row(session, first.json()["batch_id"])).idempotency_key is None

    async def test_keys_are_per_organization(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        device: Device,
        session: AsyncSession,
        fixes: Fixes,
    ) -> None:
        other_org = await make_organization(session)
        other_key = await make_api_key(session, other_org)
        items = fixes(device, 1)
        first = await push(client, auth, items, **{"Idempotency-Key": "shared"})
        other = await push(
            client,
            {"Authorization": f"Bearer {other_key.secret}"},
            items,
            **{"Idempotency-Key": "shared"},
        )
        assert "Idempotent-Replayed" not in other.headers
        assert other.json()["batch_id"] != first.json()["batch_id"]
        assert other.json()["errors"][0]["code"] == "unknown_device"
