"""Ingest batches: list and filter, the rejected items, replay one or all failed."""

from __future__ import annotations

import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from admin_support import Staff, audit_actions
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain.ingest_batches import service as batch_service
from milepost_common.domain.ingest_batches.models import BatchSource, BatchStatus, IngestBatch
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.positions.models import Position
from milepost_common.testing.factories import make_device, make_organization


async def make_batch(
    session: AsyncSession,
    org: Organization,
    *,
    status: BatchStatus = BatchStatus.PROCESSED,
    rejected_items: list[dict[str, Any]] | None = None,
    received_at: datetime | None = None,
) -> IngestBatch:
    items = rejected_items or []
    batch = IngestBatch(
        org_id=org.id,
        source=BatchSource.JSON,
        status=status,
        rejected=len(items),
        errors=[{"index": i["index"], "code": i["code"], "message": "x"} for i in items],
        rejected_items=items,
        rejected_items_expire_at=datetime.now(UTC) + timedelta(days=7) if items else None,
        received_at=received_at or datetime.now(UTC),
    )
    session.add(batch)
    await session.flush()
    return batch


async def replayed(
    client: httpx.AsyncClient, session: AsyncSession, staff: Staff, batch: IngestBatch, device: Any
) -> int | None:
    """Replay ``batch`` as an operator (202, received again); the fixes ``device`` has then."""
    response = await client.post(
        f"/admin/v1/ingest-batches/{batch.id}/replay", headers=staff.operator_auth
    )
    assert response.status_code == 202
    assert response.json() == {"id": str(batch.id), "status": "received"}
    return await session.scalar(
        select(func.count()).select_from(Position).where(col(Position.device_id) == device.id)
    )


def unknown_device_item(unique_id: str, index: int = 0) -> dict[str, Any]:
    fix = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
    return {
        "index": index,
        "code": "unknown_device",
        "item": {"device_id": unique_id, "fix_time": fix, "lat": 52.5, "lon": 13.4},
    }


class TestListBatches:
    async def test_filters_by_organization_status_and_time(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        now = datetime.now(UTC)
        failed = await make_batch(session, org, status=BatchStatus.FAILED, received_at=now)
        await make_batch(session, org, received_at=now)
        await make_batch(
            session, org, status=BatchStatus.FAILED, received_at=now - timedelta(days=2)
        )
        await make_batch(session, await make_organization(session), status=BatchStatus.FAILED)

        response = await client.get(
            "/admin/v1/ingest-batches",
            params={
                "org_id": str(org.id),
                "status": "failed",
                "from": (now - timedelta(hours=1)).isoformat(),
            },
            headers=staff.support_auth,
        )

        assert response.status_code == 200
        assert [b["id"] for b in response.json()["items"]] == [str(failed.id)]

    async def test_bad_status_is_422(self, client: httpx.AsyncClient, staff: Staff) -> None:
        response = await client.get(
            "/admin/v1/ingest-batches", params={"status": "lost"}, headers=staff.support_auth
        )

        assert response.status_code == 422


class TestGetBatch:
    async def test_detail_has_the_rejected_items(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        batch = await make_batch(
            session, await make_organization(session), rejected_items=[unknown_device_item("nope")]
        )

        response = await client.get(
            f"/admin/v1/ingest-batches/{batch.id}", headers=staff.support_auth
        )

        assert response.status_code == 200
        [item] = response.json()["rejected_items"]
        assert item["code"] == "unknown_device"
        assert item["item"]["device_id"] == "nope"

    async def test_detail_shows_who_holds_a_processing_batch_and_until_when(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        batch = await make_batch(session, await make_organization(session))
        until = datetime.now(UTC) + timedelta(seconds=30)
        batch.status = BatchStatus.PROCESSING
        batch.lease_holder = "worker-1:4242:9f3c2a1b"
        batch.lease_expires_at = until
        await session.flush()

        response = await client.get(
            f"/admin/v1/ingest-batches/{batch.id}", headers=staff.support_auth
        )

        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "processing"
        assert body["lease_holder"] == "worker-1:4242:9f3c2a1b"
        assert datetime.fromisoformat(body["lease_expires_at"]) == until

    async def test_unknown_is_404(self, client: httpx.AsyncClient, staff: Staff) -> None:
        response = await client.get(
            f"/admin/v1/ingest-batches/{uuid.uuid4()}", headers=staff.support_auth
        )

        assert response.status_code == 404


class TestReplayBatch:
    async def test_stores_what_is_valid_now(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        batch = await make_batch(
            session, org, rejected_items=[unknown_device_item("late-registered")]
        )
        device = await make_device(session, org, unique_id="late-registered")

        stored = await replayed(client, session, staff, batch, device)
        assert stored == 1
        assert await audit_actions(session, action="ingest_batches.replay") == [
            "ingest_batches.replay"
        ]

    async def test_a_batch_whose_rejected_items_expired_and_were_cleared_replays_none(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        batch = await make_batch(
            session,
            org,
            rejected_items=[unknown_device_item("too-late")],
            received_at=datetime.now(UTC) - timedelta(days=8),
        )
        batch.rejected_items_expire_at = batch.received_at + timedelta(days=7)
        await session.flush()
        assert await batch_service.clear_expired_rejected_items(
            session, datetime.now(UTC), limit=100
        )
        device = await make_device(session, org, unique_id="too-late")

        stored = await replayed(client, session, staff, batch, device)
        assert stored == 0
        detail = await client.get(
            f"/admin/v1/ingest-batches/{batch.id}", headers=staff.operator_auth
        )
        body = detail.json()
        assert (body["rejected"], body["rejected_items"], body["rejected_items_expire_at"]) == (
            1, [], None,
        )  # fmt: skip

    async def test_replay_all_failed_of_an_organization(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        failed = [await make_batch(session, org, status=BatchStatus.FAILED) for _ in range(2)]
        await make_batch(session, org)

        response = await client.post(
            f"/admin/v1/organizations/{org.id}/ingest-batches/replay-failed",
            headers=staff.operator_auth,
        )

        assert response.status_code == 202
        assert sorted(b["id"] for b in response.json()["items"]) == sorted(
            str(b.id) for b in failed
        )

    async def test_replay_all_reads_one_failed_batch_at_a_time(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        # A batch keeps up to 10,000 rejected items: 500 failed ones read at once could take
        # gigabytes. Here 60 batches of 400 items still rejected (no such device).
        org = await make_organization(session)
        fix = {"fix_time": "2026-01-01T00:00:00Z", "lat": 52.5, "lon": 13.4, "note": "x" * 40}
        for n in range(60):
            items = [
                {"index": i, "code": "unknown_device", "item": {**fix, "device_id": f"u{n}-{i}"}}
                for i in range(400)
            ]
            await make_batch(session, org, status=BatchStatus.FAILED, rejected_items=items)
        one_batch = len(orjson.dumps(items))
        session.expunge_all()  # only what the request reads is in memory

        tracemalloc.start()
        try:
            response = await client.post(
                f"/admin/v1/organizations/{org.id}/ingest-batches/replay-failed",
                headers=staff.operator_auth,
            )
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

        assert response.status_code == 202
        assert len(response.json()["items"]) == 60
        # One batch's work at a time (decoded, re-checked, written back: ~5 MB here, for 60
        # or 120 batches alike), not every batch read at once (26 MB for these 60).
        assert peak < 100 * one_batch, (peak, one_batch)
