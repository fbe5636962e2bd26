"""The platform's own statements: ingest and processing figures of ``ingest_batches``, the
``positions`` partitions and the database's size, read from the catalog."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_INGEST_RATE = text(
    "SELECT count(*), coalesce(sum(accepted), 0), coalesce(sum(rejected), 0) "
    "FROM ingest_batches WHERE received_at >= :since"
)
_PROCESSING = text(
    "SELECT count(*) FILTER (WHERE status IN ('received', 'queued', 'processing')),"
    " count(*) FILTER (WHERE status = 'failed'),"
    " min(received_at) FILTER (WHERE status IN ('received', 'queued', 'processing')),"
    " avg(extract(epoch FROM processed_at - received_at))"
    "   FILTER (WHERE status = 'processed' AND processed_at >= :since)"
    " FROM ingest_batches WHERE status <> 'processed' OR processed_at >= :since"
)
_PARTITIONS = text(
    "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_inherits i "
    "JOIN pg_class c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = 'positions'::regclass ORDER BY c.relname"
)
_INGEST_SERIES = text(
    "WITH minutes AS ("
    "  SELECT generate_series(date_trunc('minute', now()) - make_interval(mins => :n),"
    "                         date_trunc('minute', now()), interval '1 minute') AS m)"
    " SELECT m.m, coalesce(sum(b.accepted), 0), count(b.id),"
    "        avg(extract(epoch FROM b.processed_at - b.received_at))"
    " FROM minutes m LEFT JOIN ingest_batches b"
    "   ON b.received_at >= m.m AND b.received_at < m.m + interval '1 minute'"
    " GROUP BY m.m ORDER BY m.m"
)


class SystemRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def ingest_counts(self, since: datetime) -> tuple[Any, ...]:
        """``(batches, accepted, rejected)`` of the batches received since ``since``."""
        return tuple((await self.session.execute(_INGEST_RATE, {"since": since})).one())

    async def processing_figures(self, since: datetime) -> tuple[Any, ...]:
        """``(pending, failed, oldest pending received_at, mean seconds to process the
        batches processed since ``since``)``."""
        return tuple((await self.session.execute(_PROCESSING, {"since": since})).one())

    async def position_partitions(self) -> list[tuple[str, int]]:
        """``(name, total bytes)`` of every partition of ``positions``, by name."""
        rows = (await self.session.execute(_PARTITIONS)).all()
        return [(name, size) for name, size in rows]

    async def database_bytes(self) -> int:
        size = await self.session.scalar(text("SELECT pg_database_size(current_database())"))
        return int(size or 0)

    async def ingest_series(self, minutes: int) -> list[tuple[Any, ...]]:
        """Per minute over the last ``minutes`` (oldest first, every minute present):
        ``(minute, accepted, batches, mean processing seconds)``."""
        rows = (await self.session.execute(_INGEST_SERIES, {"n": minutes - 1})).all()
        return [tuple(row) for row in rows]
