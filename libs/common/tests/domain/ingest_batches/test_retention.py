"""Retention's use cases on ingest batches against Postgres: expired rejected items emptied
and old finished batches deleted, a bounded batch at a time; a replay of an emptied batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.ingest_batches import operators as batch_operators
from milepost_common.domain.ingest_batches import service as batch_service
from milepost_common.domain.ingest_batches.models import BatchStatus, IngestBatch
from milepost_common.testing.factories import (
    make_batch,
    make_device,
    make_operator,
    make_organization,
    principal_for,
)


def rejected(unique_id: str, index: int = 0) -> dict[str, Any]:
    fix = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    item = {"device_id": unique_id, "fix_time": fix, "lat": 1.5, "lon": 2.5}
    return {"index": index, "code": "unknown_device", "item": item}


async def reread(session: AsyncSession, batch: IngestBatch) -> IngestBatch:
    await session.refresh(batch)
    return batch


class TestClearExpiredRejectedItems:
    async def test_a_bounded_batch_of_expired_items_is_emptied(self, session: AsyncSession) -> None:
        now = datetime.now(UTC)
        org = await make_organization(session)
        received = now - timedelta(days=7, seconds=1)
        expired = [
            await make_batch(session, org.id, received, rejected_items=[rejected("x")])
            for _ in range(3)
        ]
        items = [rejected("y")]
        kept = await make_batch(session, org.id, now - timedelta(days=6), rejected_items=items)

        assert await batch_service.clear_expired_rejected_items(session, now, limit=2) == 2
        emptied = [b for b in expired if (await reread(session, b)).rejected_items == []]
        assert len(emptied) == 2
        assert await batch_service.clear_expired_rejected_items(session, now, limit=2) >= 1

        for batch in expired:
            await reread(session, batch)
            assert (batch.rejected_items, batch.rejected_items_expire_at) == ([], None)
            assert (batch.rejected, len(batch.errors)) == (1, 1)
        await reread(session, kept)
        assert (kept.rejected_items, kept.rejected_items_expire_at) == (
            items, kept.received_at + timedelta(days=7),
        )  # fmt: skip


class TestDeleteExpiredBatches:
    async def test_only_finished_batches_before_the_cutoff_go_a_bounded_batch_at_a_time(
        self, session: AsyncSession
    ) -> None:
        now = datetime.now(UTC)
        cutoff = now - timedelta(days=5)
        org, other = await make_organization(session), await make_organization(session)
        old = now - timedelta(days=6)
        finished = [
            await make_batch(session, org.id, old, status=status)
            for status in (BatchStatus.PROCESSED, BatchStatus.FAILED, BatchStatus.PROCESSED)
        ]
        unfinished = [
            await make_batch(session, org.id, old, status=status)
            for status in (BatchStatus.RECEIVED, BatchStatus.QUEUED, BatchStatus.PROCESSING)
        ]
        young = await make_batch(session, org.id, cutoff + timedelta(minutes=1))
        foreign = await make_batch(session, other.id, old)

        delete = batch_service.delete_expired_batches
        assert await delete(session, org.id, cutoff, limit=2) == 2
        assert await delete(session, org.id, cutoff, limit=2) == 1
        assert await delete(session, org.id, cutoff, limit=2) == 0

        session.expunge_all()
        for batch in finished:
            assert await session.get(IngestBatch, batch.id) is None
        for batch in (*unfinished, young, foreign):
            assert await session.get(IngestBatch, batch.id) is not None


class TestReplayAfterClearing:
    async def test_an_emptied_batch_replays_as_one_without_rejected_items(
        self, session: AsyncSession
    ) -> None:
        now = datetime.now(UTC)
        org = await make_organization(session)
        received = now - timedelta(days=8)
        batch = await make_batch(
            session, org.id, received, status=BatchStatus.FAILED, rejected_items=[rejected("late")]
        )
        without = await make_batch(session, org.id, received, status=BatchStatus.FAILED)
        assert await batch_service.clear_expired_rejected_items(session, now, limit=100) >= 1
        await make_device(session, org, unique_id="late")  # the cause, fixed too late
        operator = principal_for(await make_operator(session))

        replayed = await batch_operators.replay_batch(session, operator, batch)
        plain = await batch_operators.replay_batch(session, operator, without)

        for b in (replayed, plain):
            assert (b.status, b.accepted, b.duplicates, b.rejected_items) == (
                BatchStatus.RECEIVED, 0, 0, [],
            )  # fmt: skip
        assert (replayed.rejected, len(replayed.errors)) == (1, 1)  # the history stays
        assert replayed.device_ids == []
