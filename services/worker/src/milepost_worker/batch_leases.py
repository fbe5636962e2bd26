"""Batch leases, the worker's side: which child processes a batch, kept alive while it works.

A claim records this child's holder id (``WorkerContext.holder``) and an expiry
``batch_lease_s`` ahead. The holder renews it every ``batch_lease_renew_s`` from a task on
its event loop while it works, and clears it when the batch ends. The reconciler sends a
``processing`` batch again once its lease has expired: its child died, or was terminated
when the broker went away.

The statements, and why the lease and the row's locks do not get in each other's way, are
``ingest_batches.repository``'s; what stays here is what belongs to a worker child: its
holder id, its settings and the renewal loop on its event loop.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from milepost_common.db import unit_of_work
from milepost_common.domain.ingest_batches import service as batch_service
from milepost_common.logging import get_logger
from milepost_worker.runtime import WorkerContext
from milepost_worker.timeutil import utcnow

log = get_logger("milepost.worker.batches")


async def claim(ctx: WorkerContext, batch_id: uuid.UUID) -> bool:
    """Take the batch's lease for this child (in a transaction of its own); False when the
    batch is processed (after waiting for a live processing transaction to end)."""
    async with unit_of_work(ctx.db) as session:
        return await batch_service.claim_batch(
            session, batch_id, ctx.holder, ctx.settings.worker.batch_lease_s, utcnow()
        )


async def renew(ctx: WorkerContext, batch_id: uuid.UUID, extra_s: float = 0.0) -> bool:
    """Extend this child's lease (by ``extra_s`` more); False once it no longer holds one:
    the batch ended, or was claimed again after the lease expired."""
    async with unit_of_work(ctx.db) as session:
        return await batch_service.renew_lease(
            session, batch_id, ctx.holder, ctx.settings.worker.batch_lease_s + extra_s
        )


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
