"""The reports' statements: a summary per vehicle and day over trips, stops and alerts, and
the trips of a range streamed with a server-side cursor."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import select as sa_select
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain import paging
from milepost_common.domain.devices import names
from milepost_common.domain.devices.models import Device
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.trips.models import Trip

# One row per vehicle and day; the vehicle's name and plate only where the row has activity
# in the device's current tenure in this organization (devices.names). A row's day is found
# among the instants where the range's days begin (:cuts, with their dates, :days), cut by
# Python's zone rules: Postgres's `AT TIME ZONE` reads `CET`, `EET`, `MET` and `WET` as
# the fixed offsets of those abbreviations, one hour off in summer.
_DAY_OF = "(CAST(:days AS date[]))[width_bucket({column}, CAST(:cuts AS timestamptz[]))]"
_SUMMARY = """
WITH t AS (
    SELECT device_id, {day_of_start} AS day,
           sum(distance_m) AS distance_m, sum(duration_s) AS driving_time_s,
           max(max_speed) AS max_speed, max(start_time) AS last_at
    FROM trips
    WHERE org_id = :org_id AND start_time >= :start AND start_time < :end {vehicle}
    GROUP BY 1, 2
), s AS (
    SELECT device_id, {day_of_start} AS day,
           count(*) AS stops, sum(duration_s) AS stopped_time_s, max(start_time) AS last_at
    FROM stops
    WHERE org_id = :org_id AND start_time >= :start AND start_time < :end {vehicle}
    GROUP BY 1, 2
), a AS (
    SELECT device_id, {day_of_alert} AS day, count(*) AS alerts,
           max(occurred_at) AS last_at
    FROM alerts
    WHERE org_id = :org_id AND occurred_at >= :start AND occurred_at < :end {vehicle}
    GROUP BY 1, 2
), r AS (
    SELECT device_id, day,
           coalesce(t.distance_m, 0) AS distance_m,
           coalesce(t.driving_time_s, 0) AS driving_time_s,
           coalesce(s.stopped_time_s, 0) AS stopped_time_s,
           coalesce(s.stops, 0) AS stops, t.max_speed, coalesce(a.alerts, 0) AS alerts,
           greatest(t.last_at, s.last_at, a.last_at) AS last_at
    FROM t FULL JOIN s USING (device_id, day) FULL JOIN a USING (device_id, day)
)
SELECT r.device_id,
       CASE WHEN {held} THEN d.name END,
       CASE WHEN {held} THEN d.plate END,
       r.day, r.distance_m, r.driving_time_s, r.stopped_time_s, r.stopped_time_s, r.stops,
       r.max_speed, r.alerts
FROM r LEFT JOIN devices d ON d.id = r.device_id
ORDER BY r.day, r.device_id
"""


class ReportRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def org_timezone(self, org_id: uuid.UUID) -> str | None:
        return await self.session.scalar(
            select(Organization.timezone).where(Organization.id == org_id)
        )

    async def stream_summary_rows(
        self,
        org_id: uuid.UUID,
        cuts: Sequence[datetime],
        days: Sequence[date],
        end: datetime,
        vehicle_id: uuid.UUID | None,
        *,
        chunk_rows: int,
    ) -> AsyncIterator[Sequence[Any]]:
        """One row per vehicle and day of ``[cuts[0], end)``, the day ``days[i]`` beginning at
        ``cuts[i]``, of one vehicle or all, by day then vehicle, in chunks of ``chunk_rows``
        through a server-side cursor: a year of a large fleet is hundreds of thousands of
        rows."""
        params: dict[str, Any] = {
            "org_id": org_id,
            "cuts": list(cuts),
            "days": list(days),
            "start": cuts[0],
            "end": end,
        }
        vehicle = ""
        if vehicle_id is not None:
            params["vehicle_id"] = vehicle_id
            vehicle = "AND device_id = :vehicle_id"
        statement = _SUMMARY.format(
            vehicle=vehicle,
            held=names.in_tenure_sql("d", ":org_id", "r.last_at"),
            day_of_start=_DAY_OF.format(column="start_time"),
            day_of_alert=_DAY_OF.format(column="occurred_at"),
        )
        result = await self.session.stream(text(statement), params)
        async for partition in result.partitions(chunk_rows):
            yield partition

    async def stream_trip_rows(
        self,
        org_id: uuid.UUID,
        window: paging.Window,
        vehicle_id: uuid.UUID | None,
        *,
        chunk_rows: int,
    ) -> AsyncIterator[Sequence[Any]]:
        """Trips of ``window`` as ``(id, device_id, vehicle_name, vehicle_plate, start_time,
        end_time, start_lat, start_lon, end_lat, end_lon, distance_m, duration_s,
        avg_speed, max_speed)``, by start time then id, fetched in chunks through a
        server-side cursor."""
        query = (
            sa_select(
                col(Trip.id),
                col(Trip.device_id),
                names.name_column(col(Trip.org_id), col(Trip.start_time)),
                names.plate_column(col(Trip.org_id), col(Trip.start_time)),
                col(Trip.start_time),
                col(Trip.end_time),
                col(Trip.start_lat),
                col(Trip.start_lon),
                col(Trip.end_lat),
                col(Trip.end_lon),
                col(Trip.distance_m),
                col(Trip.duration_s),
                col(Trip.avg_speed),
                col(Trip.max_speed),
            )
            .join(Device, col(Device.id) == col(Trip.device_id))
            .where(col(Trip.org_id) == org_id)
        )
        if vehicle_id is not None:
            query = query.where(col(Trip.device_id) == vehicle_id)
        query = paging.time_window(query, col(Trip.start_time), window).order_by(
            col(Trip.start_time), col(Trip.id)
        )
        result = await self.session.stream(query.execution_options(yield_per=chunk_rows))
        async for partition in result.partitions(chunk_rows):
            for row in partition:
                yield row
