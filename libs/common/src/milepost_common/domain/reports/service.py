"""Summaries per vehicle and day, with days cut in the organization's time zone, and the
rows of the CSV exports (streamed with a server-side cursor, never loaded whole)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select as sa_select
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain import paging
from milepost_common.domain.devices import service as device_service
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.principals import Principal
from milepost_common.domain.reports.schemas import GroupBy, SummaryReport, SummaryRow
from milepost_common.domain.trips.models import Trip
from milepost_common.errors import ValidationFailed

MAX_RANGE = timedelta(days=366)
STREAM_CHUNK_ROWS = 1000

SUMMARY_COLUMNS = (
    "vehicle_id",
    "date",
    "distance_m",
    "driving_time_s",
    "idle_time_s",
    "stops",
    "max_speed",
    "alerts",
)
TRIP_COLUMNS = (
    "id",
    "vehicle_id",
    "start_time",
    "end_time",
    "start_lat",
    "start_lon",
    "end_lat",
    "end_lon",
    "distance_m",
    "duration_s",
    "avg_speed",
    "max_speed",
)

_SUMMARY = """
WITH t AS (
    SELECT device_id, (start_time AT TIME ZONE :tz)::date AS day,
           sum(distance_m) AS distance_m, sum(duration_s) AS driving_time_s,
           max(max_speed) AS max_speed
    FROM trips
    WHERE org_id = :org_id AND start_time >= :start AND start_time < :end {vehicle}
    GROUP BY 1, 2
), s AS (
    SELECT device_id, (start_time AT TIME ZONE :tz)::date AS day,
           count(*) AS stops, sum(duration_s) AS idle_time_s
    FROM stops
    WHERE org_id = :org_id AND start_time >= :start AND start_time < :end {vehicle}
    GROUP BY 1, 2
), a AS (
    SELECT device_id, (occurred_at AT TIME ZONE :tz)::date AS day, count(*) AS alerts
    FROM alerts
    WHERE org_id = :org_id AND occurred_at >= :start AND occurred_at < :end {vehicle}
    GROUP BY 1, 2
)
SELECT device_id, day,
       coalesce(t.distance_m, 0), coalesce(t.driving_time_s, 0), coalesce(s.idle_time_s, 0),
       coalesce(s.stops, 0), t.max_speed, coalesce(a.alerts, 0)
FROM t FULL JOIN s USING (device_id, day) FULL JOIN a USING (device_id, day)
ORDER BY day, device_id
"""


def org_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def to_instant(value: datetime | date, zone: ZoneInfo) -> datetime:
    """A date means that day's midnight in the organization's time zone."""
    if isinstance(value, datetime):
        return value
    return datetime.combine(value, time.min, tzinfo=zone)


async def _zone_of(session: AsyncSession, actor: Principal) -> ZoneInfo:
    tz = await session.scalar(
        select(Organization.timezone).where(Organization.id == actor.require_org())
    )
    return org_zone(tz or "UTC")


def _check_range(start: datetime, end: datetime) -> None:
    if end <= start or end - start > MAX_RANGE:
        raise ValidationFailed(
            "`to` must be after `from`, at most 366 days later.",
            details=[
                {"loc": ["query", "to"], "msg": "Invalid report range.", "type": "value_error"}
            ],
        )


async def summarize(
    session: AsyncSession,
    actor: Principal,
    start: datetime | date,
    end: datetime | date,
    *,
    vehicle_id: uuid.UUID | None = None,
    group_by: GroupBy = GroupBy.DAY,
) -> SummaryReport:
    """Per vehicle and day of ``[start, end)``. Raises ValidationFailed for a bad range and
    DeviceNotFound for a foreign ``vehicle_id``."""
    zone = await _zone_of(session, actor)
    start_at, end_at = to_instant(start, zone), to_instant(end, zone)
    _check_range(start_at, end_at)
    rows = await _summary_rows(session, actor, zone, start_at, end_at, vehicle_id)
    return SummaryReport(
        timezone=zone.key,
        group_by=group_by,
        start=start_at.astimezone(UTC),
        end=end_at.astimezone(UTC),
        items=[SummaryRow(**dict(zip(SUMMARY_COLUMNS, row, strict=True))) for row in rows],
    )


async def _summary_rows(
    session: AsyncSession,
    actor: Principal,
    zone: ZoneInfo,
    start: datetime,
    end: datetime,
    vehicle_id: uuid.UUID | None,
) -> Sequence[Any]:
    params: dict[str, Any] = {
        "org_id": actor.require_org(),
        "tz": zone.key,
        "start": start,
        "end": end,
    }
    vehicle = ""
    if vehicle_id is not None:
        await device_service.get_device(session, actor, vehicle_id)
        params["vehicle_id"] = vehicle_id
        vehicle = "AND device_id = :vehicle_id"
    result = await session.execute(text(_SUMMARY.format(vehicle=vehicle)), params)
    return result.all()


async def prepare_export(
    session: AsyncSession,
    actor: Principal,
    start: datetime | date,
    end: datetime | date,
    vehicle_id: uuid.UUID | None,
) -> paging.Window:
    """Validate an export before its body streams: the range (422) and the vehicle (404)."""
    zone = await _zone_of(session, actor)
    window = paging.Window(to_instant(start, zone), to_instant(end, zone))
    if window.start is None or window.end is None:
        raise ValidationFailed("`from` and `to` are required.")
    _check_range(window.start, window.end)
    if vehicle_id is not None:
        await device_service.get_device(session, actor, vehicle_id)
    return window


async def iter_summary_rows(
    session: AsyncSession, actor: Principal, window: paging.Window, vehicle_id: uuid.UUID | None
) -> AsyncIterator[Sequence[Any]]:
    """The summary's rows in CSV column order (``SUMMARY_COLUMNS``)."""
    if window.start is None or window.end is None:
        raise ValidationFailed("`from` and `to` are required.")
    zone = await _zone_of(session, actor)
    for row in await _summary_rows(session, actor, zone, window.start, window.end, vehicle_id):
        yield tuple(row)


async def iter_trip_rows(
    session: AsyncSession, actor: Principal, window: paging.Window, vehicle_id: uuid.UUID | None
) -> AsyncIterator[Sequence[Any]]:
    """Trips of ``window`` in CSV column order (``TRIP_COLUMNS``), by start time then id,
    fetched in chunks through a server-side cursor."""
    query = sa_select(
        col(Trip.id),
        col(Trip.device_id),
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
    ).where(col(Trip.org_id) == actor.require_org())
    if vehicle_id is not None:
        query = query.where(col(Trip.device_id) == vehicle_id)
    query = paging.time_window(query, col(Trip.start_time), window).order_by(
        col(Trip.start_time), col(Trip.id)
    )
    result = await session.stream(query.execution_options(yield_per=STREAM_CHUNK_ROWS))
    async for partition in result.partitions():
        for row in partition:
            yield tuple(row)
