"""Writes to ``positions`` and what the write path must know about its partitions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(slots=True)
class NewPositions:
    """Fixes to store, column by column (the shape ``unnest`` takes in one statement).

    ``attributes`` holds JSON texts: they are serialized once, by the validation pass.
    """

    device_ids: list[uuid.UUID] = field(default_factory=list)
    fix_times: list[datetime] = field(default_factory=list)
    lats: list[float] = field(default_factory=list)
    lons: list[float] = field(default_factory=list)
    speeds: list[float | None] = field(default_factory=list)
    courses: list[float | None] = field(default_factory=list)
    altitudes: list[float | None] = field(default_factory=list)
    accuracies: list[float | None] = field(default_factory=list)
    attributes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.device_ids)


@dataclass(frozen=True, slots=True)
class InsertedPositions:
    count: int
    device_ids: list[uuid.UUID]


# One round trip, duplicates skipped by the primary key (device_id, fix_time), whether they
# repeat within the batch or are already stored. Measured against COPY into a staging table
# followed by the same INSERT … SELECT … ON CONFLICT DO NOTHING: bench/ingest/RESULTS.md.
_INSERT_NEW = text(
    """
    WITH inserted AS (
        INSERT INTO positions (device_id, fix_time, org_id, lat, lon, speed, course, altitude,
                               accuracy, attributes, batch_id)
        SELECT f.device_id, f.fix_time, :org_id, f.lat, f.lon, f.speed, f.course, f.altitude,
               f.accuracy, f.attributes::jsonb, :batch_id
        FROM unnest(CAST(:device_ids AS uuid[]), CAST(:fix_times AS timestamptz[]),
                    CAST(:lats AS float8[]), CAST(:lons AS float8[]),
                    CAST(:speeds AS float8[]), CAST(:courses AS float8[]),
                    CAST(:altitudes AS float8[]), CAST(:accuracies AS float8[]),
                    CAST(:attributes AS text[]))
             AS f(device_id, fix_time, lat, lon, speed, course, altitude, accuracy, attributes)
        ON CONFLICT DO NOTHING
        RETURNING device_id
    )
    SELECT count(*) AS n, coalesce(array_agg(DISTINCT device_id), '{}') AS device_ids
    FROM inserted
    """
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
            _INSERT_NEW,
            {
                "org_id": org_id,
                "batch_id": batch_id,
                "device_ids": rows.device_ids,
                "fix_times": rows.fix_times,
                "lats": rows.lats,
                "lons": rows.lons,
                "speeds": rows.speeds,
                "courses": rows.courses,
                "altitudes": rows.altitudes,
                "accuracies": rows.accuracies,
                "attributes": rows.attributes,
            },
        )
        count, device_ids = result.one()
        return InsertedPositions(int(count), list(device_ids))

    async def partition_bounds(self) -> list[tuple[datetime, datetime]]:
        """``[from, to)`` of every partition bounded by timestamps, oldest first."""
        result = await self.session.execute(_PARTITION_BOUNDS)
        return [(lower, upper) for lower, upper in result.all()]
