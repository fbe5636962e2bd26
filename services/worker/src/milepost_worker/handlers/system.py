"""``system.heartbeat`` and ``system.ping``: proof that a worker consumes (the liveness
check reads it), the backlog the heartbeat exports, the answer to ``milepost-worker-ping``."""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson
from sqlalchemy import text

from milepost_common.db import unit_of_work
from milepost_common.domain.ingest_batches.models import BatchStatus
from milepost_worker.health import HEARTBEAT_KEY, PING_KEY_PREFIX
from milepost_worker.runtime import WorkerContext


async def beat_heartbeat(ctx: WorkerContext, hostname: str, queue_depths: dict[str, int]) -> None:
    """Refresh the key the liveness check reads: a worker consumed a task from beat just now."""
    value = orjson.dumps({"at": time.time(), "hostname": hostname, "queues": queue_depths})
    ttl = int(max(ctx.settings.worker.liveness_max_age_s * 10, 60))
    await ctx.cache.set(HEARTBEAT_KEY, value, ex=ttl)


UNPROCESSED = (BatchStatus.RECEIVED, BatchStatus.QUEUED, BatchStatus.PROCESSING)


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
    waiting = (*UNPROCESSED, BatchStatus.FAILED)
    async with unit_of_work(ctx.db) as session:
        rows = (
            await session.execute(
                text(
                    "SELECT status, count(*), extract(epoch FROM now() - min(received_at))"
                    " FROM ingest_batches WHERE status = ANY(:statuses) GROUP BY status"
                ),
                {"statuses": [str(s) for s in waiting]},
            )
        ).all()
        days_ahead = await session.scalar(
            text(
                "SELECT to_date(substr(max(c.relname), 12), 'YYYYMMDD')"
                " - (now() AT TIME ZONE 'UTC')::date FROM pg_inherits i"
                " JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'positions'::regclass"
                " AND c.relname ~ '^positions_p[0-9]{8}$'"
            )
        )
    counts = dict.fromkeys(waiting, 0)
    oldest = 0.0
    for status, count, age_s in rows:
        counts[BatchStatus(status)] = int(count)
        if status in UNPROCESSED:
            oldest = max(oldest, float(age_s))
    return Backlog(counts, oldest, -1 if days_ahead is None else int(days_ahead))


async def answer_ping(ctx: WorkerContext, nonce: str) -> None:
    await ctx.cache.set(PING_KEY_PREFIX + nonce, b"pong", ex=300)
