"""``system.heartbeat``'s backlog (the gauges it exports) and ``system.ping``'s answer (to
``milepost-worker-ping`` and each node's liveness probe)."""

from __future__ import annotations

from dataclasses import dataclass

from milepost_common.db import unit_of_work
from milepost_common.domain.ingest_batches import service as batch_service
from milepost_common.domain.ingest_batches.models import BatchStatus
from milepost_common.domain.positions import service as position_service
from milepost_worker.health import PING_KEY_PREFIX
from milepost_worker.runtime import WorkerContext


@dataclass(frozen=True, slots=True)
class Backlog:
    """What is left to do, as the heartbeat exports it (``milepost_worker.metrics``)."""

    batches: dict[BatchStatus, int]
    oldest_unprocessed_age_s: float
    partition_days_ahead: int


async def backlog(ctx: WorkerContext) -> Backlog:
    """Batches not processed by status, the age of the oldest one still to process (the
    processing lag), and the days of position partitions ahead of today: one query on the
    ``(status, received_at)`` index and one on the catalog, timed by the database's clock."""
    async with unit_of_work(ctx.db) as session:
        waiting = await batch_service.count_waiting(session)
        days_ahead = await position_service.partition_days_ahead(session)
    return Backlog(waiting.batches, waiting.oldest_unprocessed_age_s, days_ahead)


async def answer_ping(ctx: WorkerContext, nonce: str) -> None:
    await ctx.cache.set(PING_KEY_PREFIX + nonce, b"pong", ex=300)
