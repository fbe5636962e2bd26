"""The system status: queue depths, worker heartbeats, ingest rate, processing lag,
database size and the ``positions`` partitions. Reads only; every part is one cheap query
or a few Redis commands. The queue names and the heartbeat keys are the task kit's
(``milepost_common.tasks``), passed in: the domain knows no queue library."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.system.repository import SystemRepository
from milepost_common.domain.system.schemas import (
    IngestRate,
    MinutePoint,
    Partitions,
    ProcessingLag,
    QueueDepth,
    SystemStatus,
    WorkerHeartbeat,
)
from milepost_common.errors import Unavailable

# kombu's Redis transport keeps one list per priority step: "<queue>", "<queue>\x06\x163", …
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
RATE_WINDOW_MINUTES = 15


@dataclass(frozen=True, slots=True)
class Broker:
    """Where the queues and the workers' heartbeats live."""

    redis: Redis
    queues: Sequence[str]
    heartbeat_prefix: str
    heartbeat_stale_s: float


async def queue_depths(broker: Redis, queues: Sequence[str]) -> list[QueueDepth]:
    async with broker.pipeline(transaction=False) as pipe:
        for queue in queues:
            for suffix in _PRIORITY_SUFFIXES:
                pipe.llen(queue + suffix)
        lengths = await pipe.execute()
    step = len(_PRIORITY_SUFFIXES)
    return [
        QueueDepth(name=queue, depth=sum(lengths[i * step : (i + 1) * step]))
        for i, queue in enumerate(queues)
    ]


def _heartbeat_time(raw: bytes | str) -> datetime | None:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if isinstance(value, dict):
        value = value.get("at")
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


async def worker_heartbeats(broker: Broker, now: datetime) -> list[WorkerHeartbeat]:
    prefix = broker.heartbeat_prefix
    keys = [key async for key in broker.redis.scan_iter(match=f"{prefix}*", count=100)]
    values = await broker.redis.mget(keys) if keys else []
    beats: list[WorkerHeartbeat] = []
    for key, raw in zip(keys, values, strict=True):
        seen = _heartbeat_time(raw) if raw is not None else None
        if seen is None:
            continue
        name = (key.decode() if isinstance(key, bytes) else key).removeprefix(prefix)
        age = max(0.0, (now - seen).total_seconds())
        beats.append(
            WorkerHeartbeat(
                name=name, last_seen_at=seen, age_s=age, alive=age <= broker.heartbeat_stale_s
            )
        )
    return sorted(beats, key=lambda b: b.name)


async def _ingest_rate(session: AsyncSession, now: datetime) -> IngestRate:
    row = await SystemRepository(session).ingest_counts(
        now - timedelta(minutes=RATE_WINDOW_MINUTES)
    )
    return IngestRate(
        window_minutes=RATE_WINDOW_MINUTES,
        batches=row[0],
        positions_accepted=row[1],
        positions_rejected=row[2],
        positions_per_minute=round(row[1] / RATE_WINDOW_MINUTES, 2),
    )


async def _processing(session: AsyncSession, now: datetime) -> ProcessingLag:
    row = await SystemRepository(session).processing_figures(
        now - timedelta(minutes=RATE_WINDOW_MINUTES)
    )
    oldest: datetime | None = row[2]
    return ProcessingLag(
        pending_batches=row[0],
        failed_batches=row[1],
        oldest_pending_received_at=oldest,
        lag_s=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        avg_processing_s=round(float(row[3]), 3) if row[3] is not None else None,
    )


async def _partitions(session: AsyncSession, today: date) -> Partitions:
    rows = await SystemRepository(session).position_partitions()
    days = sorted(
        datetime.strptime(name.removeprefix("positions_p"), "%Y%m%d").replace(tzinfo=UTC).date()
        for name, _ in rows
        if name.startswith("positions_p")
    )
    last = days[-1] if days else None
    return Partitions(
        count=len(rows),
        first_day=days[0] if days else None,
        last_day=last,
        days_ahead=(last - today).days if last else 0,
        total_bytes=sum(int(size) for _, size in rows),
    )


async def get_system_status(session: AsyncSession, broker: Broker) -> SystemStatus:
    """A snapshot of the platform. Raises Unavailable (503) when the broker cannot answer."""
    now = datetime.now(UTC)
    try:
        queues = await queue_depths(broker.redis, broker.queues)
        workers = await worker_heartbeats(broker, now)
    except (RedisError, OSError):
        raise Unavailable("The broker (Redis) does not answer.") from None
    database_bytes = await SystemRepository(session).database_bytes()
    return SystemStatus(
        checked_at=now,
        queues=queues,
        workers=workers,
        ingest=await _ingest_rate(session, now),
        processing=await _processing(session, now),
        database_bytes=int(database_bytes or 0),
        positions_partitions=await _partitions(session, now.date()),
    )


async def ingest_series(session: AsyncSession, minutes: int = 60) -> list[MinutePoint]:
    """Per minute over the last ``minutes`` (oldest first, every minute present): positions
    accepted, batches received, and mean processing time of the batches received then."""
    rows = await SystemRepository(session).ingest_series(minutes)
    return [
        MinutePoint(
            minute=row[0],
            positions=int(row[1]),
            batches=int(row[2]),
            lag_s=round(float(row[3]), 3) if row[3] is not None else None,
        )
        for row in rows
    ]
