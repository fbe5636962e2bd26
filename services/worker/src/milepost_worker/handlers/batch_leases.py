"""Batch leases: which worker child processes a batch, and until when it counts as alive.

A claim records the child's holder id (``WorkerContext.holder``) and an expiry
``batch_lease_s`` ahead, by the database's clock (the one the reconciler compares with). The
holder renews it every ``batch_lease_renew_s`` from a task on its event loop while it works,
and clears it when the batch ends. The reconciler sends a ``processing`` batch again once its
lease has expired: its child died, or was terminated when the broker went away.

The lease only says who is alive; exclusion stays with the batch row. The claim locks it
``FOR UPDATE``, which waits for a processing transaction's ``FOR KEY SHARE``; that weaker
lock leaves the row open to renewals (plain updates of non-key columns), so a slow batch keeps
its lease while another claim waits, then finds it ``processed``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Update, func, update
from sqlmodel import col, select

from milepost_common.db import unit_of_work
from milepost_common.domain.ingest_batches.models import BatchStatus, IngestBatch
from milepost_common.logging import get_logger
from milepost_worker.runtime import WorkerContext

log = get_logger("milepost.worker.batches")

# The values that end a lease, with the batch's final status.
RELEASED: dict[str, Any] = {"lease_holder": None, "lease_expires_at": None}


def lease_end(ctx: WorkerContext, extra_s: float = 0.0) -> ColumnElement[datetime]:
    return func.now() + timedelta(seconds=ctx.settings.worker.batch_lease_s + extra_s)


def claim(ctx: WorkerContext, batch_id: uuid.UUID, now: datetime) -> Update:
    """The claim statement: returns the id unless the batch is processed (after waiting for
    a live processing transaction to end)."""
    unprocessed = (
        select(col(IngestBatch.id))
        .where(col(IngestBatch.id) == batch_id, col(IngestBatch.status) != BatchStatus.PROCESSED)
        .with_for_update()
        .scalar_subquery()
    )
    return (
        update(IngestBatch)
        .where(col(IngestBatch.id) == unprocessed)
        .values(
            status=BatchStatus.PROCESSING,
            attempts=col(IngestBatch.attempts) + 1,
            processing_started_at=now,
            lease_holder=ctx.holder,
            lease_expires_at=lease_end(ctx),
        )
        .returning(col(IngestBatch.id))
    )


async def renew(ctx: WorkerContext, batch_id: uuid.UUID, extra_s: float = 0.0) -> bool:
    """Extend this child's lease (by ``extra_s`` more); False once it no longer holds one:
    the batch ended, or was claimed again after the lease expired."""
    async with unit_of_work(ctx.db) as session:
        renewed = (
            await session.execute(
                update(IngestBatch)
                .where(
                    col(IngestBatch.id) == batch_id,
                    col(IngestBatch.lease_holder) == ctx.holder,
                    col(IngestBatch.status) == BatchStatus.PROCESSING,
                )
                .values(lease_expires_at=lease_end(ctx, extra_s))
                .returning(col(IngestBatch.id))
            )
        ).scalar_one_or_none()
    return renewed is not None


async def hold_for_retry(ctx: WorkerContext, batch_id: uuid.UUID, delay_s: float) -> bool:
    """Keep the lease over a scheduled retry, so the reconciler leaves the batch to it."""
    return await renew(ctx, batch_id, extra_s=delay_s)


@asynccontextmanager
async def renewed(ctx: WorkerContext, batch_id: uuid.UUID) -> AsyncIterator[None]:
    """Renew the lease on this child's loop while the body runs (the body must not hold the
    loop longer than the lease without awaiting)."""
    stop = asyncio.Event()

    async def keep() -> None:
        every = ctx.settings.worker.batch_lease_renew_s
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            if stop.is_set():
                return
            try:
                if not await renew(ctx, batch_id):
                    return
            except Exception:  # noqa: BLE001 - the next period tries again before expiry
                log.warning("batch_lease_renewal_failed", batch_id=str(batch_id))

    renewer = asyncio.create_task(keep())
    try:
        yield
    finally:
        # Stopped, not cancelled: a renewal in flight finishes (one short statement) rather
        # than leaving its pooled connection mid-query.
        stop.set()
        await renewer
