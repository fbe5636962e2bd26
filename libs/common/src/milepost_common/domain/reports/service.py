"""Summaries per vehicle and day, with days cut in the organization's time zone, and the
rows of the CSV exports (streamed with a server-side cursor, never loaded whole)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common import units
from milepost_common.domain import paging
from milepost_common.domain.devices import service as device_service
from milepost_common.domain.principals import Principal
from milepost_common.domain.reports.repository import ReportRepository
from milepost_common.domain.reports.schemas import GroupBy, SummaryReport, SummaryRow
from milepost_common.domain.trips import models as trip_models
from milepost_common.errors import ValidationFailed

MAX_RANGE = timedelta(days=366)
# Without `from` and `to`: the last this many whole days in the organization's time zone
# (day boundaries, so repeated requests of a day share their cache entry).
DEFAULT_DAYS = 7
STREAM_CHUNK_ROWS = 1000

SUMMARY_COLUMNS = tuple(SummaryRow.model_fields)
_SUMMARY_ROWS = TypeAdapter(list[SummaryRow])
TRIP_COLUMNS = (
    "id",
    "vehicle_id",
    "vehicle_name",
    "vehicle_plate",
    "start_time",
    *trip_models.TRIP_FIELDS,
)


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


def day_cuts(start: datetime, end: datetime, zone: ZoneInfo) -> tuple[list[datetime], list[date]]:
    """Where each day of ``[start, end)`` begins, ``start`` then every midnight in ``zone``
    after it, and each one's date there: the summary's days, cut by Python's zone rules."""
    cuts, days = [start], [start.astimezone(zone).date()]
    day = days[0]
    # The calendar's last day has no next midnight to look for.
    while day < date.max and (midnight := to_instant(day + timedelta(days=1), zone)) < end:
        day += timedelta(days=1)
        if midnight > cuts[-1]:
            cuts.append(midnight)
            days.append(day)
        else:  # the day before had no instant (the zone skipped it): this one begins there
            days[-1] = day
    return cuts, days


async def _zone_of(session: AsyncSession, actor: Principal) -> ZoneInfo:
    tz = await ReportRepository(session).org_timezone(actor.require_org())
    return org_zone(tz or "UTC")


def _check_range(start: datetime, end: datetime) -> None:
    if end <= start or end - start > MAX_RANGE:
        raise ValidationFailed(
            "`to` must be after `from`, at most 366 days later.",
            details=[
                {"loc": ["query", "to"], "msg": "Invalid report range.", "type": "value_error"}
            ],
        )


def _out_of_calendar(given: Sequence[str]) -> ValidationFailed:
    return ValidationFailed(
        "`from` and `to` must fall between the years 1 and 9999, in UTC and in the"
        f" organization's time zone (a bound left out is {DEFAULT_DAYS} days from the other).",
        details=[
            {"loc": ["query", name], "msg": "Out of the calendar's range.", "type": "value_error"}
            for name in given
        ],
    )


def resolve_range(
    start: datetime | date | None,
    end: datetime | date | None,
    zone: ZoneInfo,
    now: datetime | None = None,
) -> tuple[datetime, datetime]:
    """``[start, end)`` as instants. Without both: the last ``DEFAULT_DAYS`` whole days in
    ``zone`` (today excluded); with one of them: ``DEFAULT_DAYS`` days from or to it. Raises
    ValidationFailed for an empty or too long range, or for bounds that are no instants in
    the calendar of UTC or of ``zone`` (a date near year 1 or 9999, moved by the defaults
    or the zone)."""
    given = [name for name, bound in (("from", start), ("to", end)) if bound is not None]
    try:
        if start is None:
            if end is None:
                end = (now or datetime.now(UTC)).astimezone(zone).date()
            start = end - timedelta(days=DEFAULT_DAYS)
        elif end is None:
            end = start + timedelta(days=DEFAULT_DAYS)
        start_at, end_at = to_instant(start, zone), to_instant(end, zone)
        # Every answer states them in UTC, and the summary names their days on the
        # organization's clock: they must be instants in both calendars.
        for bound in (start_at, end_at):
            bound.astimezone(UTC)
            bound.astimezone(zone)
    except OverflowError:
        raise _out_of_calendar(given) from None
    _check_range(start_at, end_at)
    return start_at, end_at


async def report_range(
    session: AsyncSession,
    actor: Principal,
    start: datetime | date | None,
    end: datetime | date | None,
) -> tuple[datetime, datetime]:
    """``resolve_range`` in the actor's organization's time zone (UTC instants)."""
    start_at, end_at = resolve_range(start, end, await _zone_of(session, actor))
    return start_at.astimezone(UTC), end_at.astimezone(UTC)


async def summary_json(
    session: AsyncSession,
    actor: Principal,
    start: datetime | date | None,
    end: datetime | date | None,
    *,
    vehicle_id: uuid.UUID | None = None,
    group_by: GroupBy = GroupBy.DAY,
) -> bytes:
    """The ``SummaryReport`` of ``[start, end)`` (``resolve_range``'s defaults) as JSON,
    per vehicle and day. Raises ValidationFailed for a bad range and DeviceNotFound for a
    foreign ``vehicle_id``.

    Its items are read and serialized a chunk at a time: a year of a large fleet is hundreds
    of thousands of rows, which as models at once would cost several times the answer's
    bytes and hold the event loop for seconds."""
    zone = await _zone_of(session, actor)
    start_at, end_at = resolve_range(start, end, zone)
    empty = SummaryReport(
        timezone=zone.key,
        group_by=group_by,
        start=start_at.astimezone(UTC),
        end=end_at.astimezone(UTC),
        items=[],
    ).model_dump_json(by_alias=True)
    # `items` is the report's last field: its rows go between `[` and `]}`.
    head, tail = empty.removesuffix("]}").encode(), b"]}"
    parts = [head]
    async for rows in _summary_chunks(session, actor, zone, start_at, end_at, vehicle_id):
        if len(parts) > 1:
            parts.append(b",")
        parts.append(_SUMMARY_ROWS.dump_json(rows)[1:-1])
    parts.append(tail)
    return b"".join(parts)


async def _summary_chunks(
    session: AsyncSession,
    actor: Principal,
    zone: ZoneInfo,
    start: datetime,
    end: datetime,
    vehicle_id: uuid.UUID | None,
) -> AsyncIterator[list[SummaryRow]]:
    if vehicle_id is not None:
        await device_service.get_device(session, actor, vehicle_id)
    cuts, days = day_cuts(start, end, zone)
    chunks = ReportRepository(session).stream_summary_rows(
        actor.require_org(), cuts, days, end, vehicle_id, chunk_rows=STREAM_CHUNK_ROWS
    )
    async for rows in chunks:
        yield [SummaryRow(**dict(zip(SUMMARY_COLUMNS, row, strict=True))) for row in rows]


async def prepare_export(
    session: AsyncSession,
    actor: Principal,
    start: datetime | date | None,
    end: datetime | date | None,
    vehicle_id: uuid.UUID | None,
) -> paging.Window:
    """Validate an export before its body streams: the range (422; ``resolve_range``'s
    defaults) and the vehicle (404)."""
    zone = await _zone_of(session, actor)
    window = paging.Window(*resolve_range(start, end, zone))
    if vehicle_id is not None:
        await device_service.get_device(session, actor, vehicle_id)
    return window


def _bounds(window: paging.Window) -> tuple[datetime, datetime]:
    if window.start is None or window.end is None:
        raise ValidationFailed("`from` and `to` are required.")
    return window.start, window.end


async def iter_summary_rows(
    session: AsyncSession, actor: Principal, window: paging.Window, vehicle_id: uuid.UUID | None
) -> AsyncIterator[Sequence[Any]]:
    """The summary's rows in CSV column order (``SUMMARY_COLUMNS``), rounded as in JSON,
    fetched in chunks through a server-side cursor."""
    start, end = _bounds(window)
    zone = await _zone_of(session, actor)
    async for rows in _summary_chunks(session, actor, zone, start, end, vehicle_id):
        for row in rows:
            shown = row.model_dump()
            yield tuple(shown[name] for name in SUMMARY_COLUMNS)


async def iter_trip_rows(
    session: AsyncSession, actor: Principal, window: paging.Window, vehicle_id: uuid.UUID | None
) -> AsyncIterator[Sequence[Any]]:
    """Trips of ``window`` in CSV column order (``TRIP_COLUMNS``), rounded as in JSON, by
    start time then id, fetched in chunks through a server-side cursor."""
    rows = ReportRepository(session).stream_trip_rows(
        actor.require_org(), window, vehicle_id, chunk_rows=STREAM_CHUNK_ROWS
    )
    async for row in rows:
        shown = units.round_fields(dict(zip(TRIP_COLUMNS, row, strict=True)))
        yield tuple(shown.values())
