"""Writes to ``positions`` and what the write path must know about its partitions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(slots=True)
class NewPositions:
    """Fixes to store, one tuple each: ``(device_id, fix_time, lat, lon, speed, course,
    altitude, accuracy, attributes)``, ``attributes`` already JSON (an ``orjson.Fragment``).

    They travel as one JSON array parameter, serialized by orjson in one call: measured,
    that costs the app a third of the CPU of nine typed arrays encoded element by element
    for ``unnest``, for the same database work (bench/ingest/RESULTS.md).
    """

    rows: list[tuple[Any, ...]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def to_json(self) -> str:
        # str: ids that are not exactly uuid.UUID (asyncpg's own UUID type, for one).
        return orjson.dumps(self.rows, default=str).decode()


@dataclass(frozen=True, slots=True)
class InsertedPositions:
    count: int
    device_ids: list[uuid.UUID]


# One round trip, duplicates skipped by the primary key (device_id, fix_time), whether they
# repeat within the batch or are already stored. The fixes arrive as one JSON array; the
# alternatives measured (nine typed arrays for unnest; COPY into a staging table, then the
# same INSERT … SELECT … ON CONFLICT DO NOTHING) cost the app more CPU for the same database
# work: bench/ingest/RESULTS.md. Parameters: org_id, batch_id, rows (NewPositions.to_json).
INSERTED_CTE = """
    inserted AS (
        INSERT INTO positions (device_id, fix_time, org_id, lat, lon, speed, course, altitude,
                               accuracy, attributes, batch_id)
        SELECT (f->>0)::uuid, (f->>1)::timestamptz, :org_id, (f->>2)::float8, (f->>3)::float8,
               (f->>4)::float8, (f->>5)::float8, (f->>6)::float8, (f->>7)::float8, f->8,
               :batch_id
        FROM jsonb_array_elements(CAST(:rows AS jsonb)) AS f
        ON CONFLICT DO NOTHING
        RETURNING device_id
    )
"""
INSERT_NEW_POSITIONS = text(
    f"""
    WITH {INSERTED_CTE}
    SELECT count(*) AS n, coalesce(array_agg(DISTINCT device_id), '{{}}') AS device_ids
    FROM inserted
    """  # noqa: S608 - constant SQL
)

# Bounds of every range partition of ``positions``, read from the catalog: no DDL, no scan.
# Postgres prints the bounds with their UTC offset, so the casts are exact in any time zone.
_PARTITION_BOUNDS = text(
    """
    SELECT m[1]::timestamptz AS lower, m[2]::timestamptz AS upper
    FROM (
        SELECT regexp_match(pg_get_expr(c.relpartbound, c.oid),
                            'FROM \\(''([^'']+)''\\) TO \\(''([^'']+)''\\)') AS m
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'positions'::regclass
    ) AS partitions
    WHERE m IS NOT NULL
    ORDER BY 1
    """
)


class PositionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert_new(
        self, org_id: uuid.UUID, batch_id: uuid.UUID, rows: NewPositions
    ) -> InsertedPositions:
        """Insert the rows not stored yet; report how many were new and for which devices."""
        result = await self.session.execute(
            INSERT_NEW_POSITIONS,
            {"org_id": org_id, "batch_id": batch_id, "rows": rows.to_json()},
        )
        count, device_ids = result.one()
        return InsertedPositions(int(count), list(device_ids))

    async def last_fix_time(self, device_id: uuid.UUID) -> datetime | None:
        # One backward probe of the (device_id, fix_time) index per partition.
        result = await self.session.execute(
            text("SELECT max(fix_time) FROM positions WHERE device_id = :device_id"),
            {"device_id": device_id},
        )
        value: datetime | None = result.scalar_one()
        return value

    async def partition_bounds(self) -> list[tuple[datetime, datetime]]:
        """``[from, to)`` of every partition bounded by timestamps, oldest first."""
        result = await self.session.execute(_PARTITION_BOUNDS)
        return [(lower, upper) for lower, upper in result.all()]
