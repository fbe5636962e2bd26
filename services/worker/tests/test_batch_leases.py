"""Batch leases in-process, on a database of their own (the locks need real transactions):
claim, renewal beside a processing transaction, release, retry, and another holder."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select, text
from sqlmodel import col

from milepost_common.db import unit_of_work
from milepost_common.domain.ingest_batches.models import BatchSource, BatchStatus, IngestBatch
from milepost_common.testing.factories import make_organization
from milepost_worker import batch_leases
from milepost_worker.handlers import ingest_batches
from milepost_worker.runtime import WorkerContext, build_context
from milepost_worker.settings import WorkerSettings


@pytest.fixture
async def own_ctx(
    committed_database: str, redis: Redis, settings_factory: Callable[..., Any]
) -> AsyncIterator[WorkerContext]:
    settings = settings_factory(
        WorkerSettings,
        db={"url": committed_database},
        worker={"batch_lease_s": 2, "batch_lease_renew_s": 0.2},
    )
    ctx = build_context(settings)
    yield ctx
    await ctx.aclose()


def other_child(ctx: WorkerContext) -> WorkerContext:
    """The same database seen from another worker child (its own holder id)."""
    return WorkerContext(ctx.settings, ctx.db, ctx.cache, ctx.box, ctx.http)


async def new_batch(ctx: WorkerContext) -> uuid.UUID:
    async with unit_of_work(ctx.db) as session:
        org = await make_organization(session)
        batch = IngestBatch(org_id=org.id, source=BatchSource.JSON, status=BatchStatus.QUEUED)
        session.add(batch)
        await session.flush()
        return batch.id


async def claim(ctx: WorkerContext, batch_id: uuid.UUID) -> bool:
    return await batch_leases.claim(ctx, batch_id)


async def lease(ctx: WorkerContext, batch_id: uuid.UUID) -> tuple[str | None, float | None]:
    """The holder and the seconds left on its lease, by the database's clock."""
    async with unit_of_work(ctx.db) as session:
        holder, left = (
            await session.execute(
                select(
                    col(IngestBatch.lease_holder),
                    func.extract("epoch", col(IngestBatch.lease_expires_at) - func.now()),
                ).where(col(IngestBatch.id) == batch_id)
            )
        ).one()
    return holder, None if left is None else float(left)


class TestClaim:
    async def test_records_the_holder_and_its_lease(self, own_ctx: WorkerContext) -> None:
        batch_id = await new_batch(own_ctx)

        assert await claim(own_ctx, batch_id)

        holder, left = await lease(own_ctx, batch_id)
        assert holder == own_ctx.holder
        assert left is not None
        assert 1 < left <= 2

    async def test_holder_ids_differ_per_child(self, own_ctx: WorkerContext) -> None:
        assert own_ctx.holder != other_child(own_ctx).holder

    async def test_processed_batch_ends_its_lease(self, own_ctx: WorkerContext) -> None:
        batch_id = await new_batch(own_ctx)

        assert (await ingest_batches.process_batch(own_ctx, batch_id)).status == "processed"

        assert await lease(own_ctx, batch_id) == (None, None)


class TestRenewal:
    async def test_renews_beside_the_processing_lock_while_a_claim_waits(
        self, own_ctx: WorkerContext
    ) -> None:
        batch_id = await new_batch(own_ctx)
        assert await claim(own_ctx, batch_id)
        second = other_child(own_ctx)
        async with own_ctx.db.engine.connect() as processing:
            # What process_batch holds while it works.
            await processing.execute(
                text("SELECT 1 FROM ingest_batches WHERE id = :id FOR KEY SHARE"), {"id": batch_id}
            )

            assert await asyncio.wait_for(batch_leases.renew(own_ctx, batch_id, extra_s=10), 5)
            _, left = await lease(own_ctx, batch_id)
            assert left is not None
            assert left > 11
            waiting = asyncio.create_task(claim(second, batch_id))
            await asyncio.sleep(0.5)
            assert not waiting.done()
            await processing.execute(
                text("UPDATE ingest_batches SET status = 'processed' WHERE id = :id"),
                {"id": batch_id},
            )
            await processing.commit()

        assert not await asyncio.wait_for(waiting, 5)

    async def test_renewed_keeps_the_lease_while_the_body_runs(
        self, own_ctx: WorkerContext
    ) -> None:
        batch_id = await new_batch(own_ctx)
        assert await claim(own_ctx, batch_id)

        async with batch_leases.renewed(own_ctx, batch_id):
            await asyncio.sleep(1.0)
            _, left = await lease(own_ctx, batch_id)

        assert left is not None
        assert left > 1.5  # 1.0 without renewal

    async def test_a_lost_lease_is_not_renewed(self, own_ctx: WorkerContext) -> None:
        batch_id = await new_batch(own_ctx)
        assert await claim(own_ctx, batch_id)
        second = other_child(own_ctx)
        assert await claim(second, batch_id)

        assert not await batch_leases.renew(own_ctx, batch_id)
        assert (await lease(own_ctx, batch_id))[0] == second.holder

    async def test_hold_for_retry_covers_the_delay(self, own_ctx: WorkerContext) -> None:
        batch_id = await new_batch(own_ctx)
        assert await claim(own_ctx, batch_id)

        assert await batch_leases.hold_for_retry(own_ctx, batch_id, 60)

        _, left = await lease(own_ctx, batch_id)
        assert left is not None
        assert left > 61


class TestAnotherHolder:
    async def test_old_holder_skips_a_batch_claimed_again(
        self, own_ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        batch_id = await new_batch(own_ctx)
        second = other_child(own_ctx)
        renewed = batch_leases.renewed

        @asynccontextmanager
        async def claimed_meanwhile(ctx: WorkerContext, held: uuid.UUID) -> AsyncIterator[None]:
            # The lease ran out between the claim and the lock; another child claimed it.
            assert await claim(second, held)
            async with renewed(ctx, held):
                yield

        monkeypatch.setattr(batch_leases, "renewed", claimed_meanwhile)

        assert (await ingest_batches.process_batch(own_ctx, batch_id)).status == "skipped"
        async with unit_of_work(own_ctx.db) as session:
            row = await session.get(IngestBatch, batch_id)
            assert row is not None
            assert (row.status, row.lease_holder) == (BatchStatus.PROCESSING, second.holder)

    async def test_fail_leaves_a_batch_another_child_holds(self, own_ctx: WorkerContext) -> None:
        batch_id = await new_batch(own_ctx)
        second = other_child(own_ctx)
        assert await claim(own_ctx, batch_id)
        assert await claim(second, batch_id)

        await ingest_batches.fail_batch(own_ctx, batch_id, "boom")
        async with unit_of_work(own_ctx.db) as session:
            row = await session.get(IngestBatch, batch_id)
            assert row is not None
            assert row.status == BatchStatus.PROCESSING

        await ingest_batches.fail_batch(second, batch_id, "boom")
        async with unit_of_work(own_ctx.db) as session:
            row = await session.get(IngestBatch, batch_id)
            assert row is not None
            assert (row.status, row.lease_holder, row.lease_expires_at) == (
                BatchStatus.FAILED,
                None,
                None,
            )


class TestReconciler:
    async def test_sends_an_expired_lease_again_unless_its_transaction_is_live(
        self, own_ctx: WorkerContext
    ) -> None:
        batch_id = await new_batch(own_ctx)
        assert await claim(own_ctx, batch_id)
        async with unit_of_work(own_ctx.db) as session:
            await session.execute(
                text(
                    "UPDATE ingest_batches SET lease_expires_at = now() - interval '1 second' "
                    "WHERE id = :id"
                ),
                {"id": batch_id},
            )
        async with own_ctx.db.engine.connect() as processing:
            await processing.execute(
                text("SELECT 1 FROM ingest_batches WHERE id = :id FOR KEY SHARE"), {"id": batch_id}
            )

            assert batch_id not in (await ingest_batches.stale_batches(own_ctx)).lease_expired

        stale = await ingest_batches.stale_batches(own_ctx)

        assert batch_id in stale.lease_expired
        async with unit_of_work(own_ctx.db) as session:
            row = await session.get(IngestBatch, batch_id)
            assert row is not None
            assert (row.status, row.lease_holder) == (BatchStatus.QUEUED, None)
