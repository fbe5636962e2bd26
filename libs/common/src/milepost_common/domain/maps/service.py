"""What an operator's map shows of one organization, read with the public API's own use
cases named by organization instead of by the caller's: operators read every organization.

A device's day is the calendar day in its organization's time zone; its trips and stops are
those that overlap that day (the stop the vehicle spent the night at included), read within
the device's current organization only (rows of an earlier tenure keep theirs).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.db import SessionReads
from milepost_common.domain import paging
from milepost_common.domain.alerts import service as alert_service
from milepost_common.domain.alerts.schemas import AlertFilters, AlertRead
from milepost_common.domain.devices import service as device_service
from milepost_common.domain.devices.models import Device
from milepost_common.domain.maps.schemas import DeviceDay, FleetPositionRead
from milepost_common.domain.organizations import service as org_service
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.positions import service as position_service
from milepost_common.domain.reports import service as report_service
from milepost_common.domain.trips import service as trip_service
from milepost_common.domain.trips.schemas import StopRead, TripDetail, TripRead
from milepost_common.errors import ValidationFailed

# Days a map can ask for: any whose bounds exist in every time zone.
FIRST_DAY = date(1970, 1, 2)
LAST_DAY = date(9999, 12, 30)
MAX_ALERT_PINS = 500
DAY_PAGE = paging.PageRequest(limit=1000)

ItemT = TypeVar("ItemT")


def today_in(org: Organization, now: datetime | None = None) -> date:
    """The organization's current calendar day."""
    return (now or datetime.now(UTC)).astimezone(report_service.org_zone(org.timezone)).date()


def day_bounds(org: Organization, day: date) -> tuple[datetime, datetime]:
    """``[start, end)`` of ``day`` in the organization's time zone, in UTC (a DST day is 23
    or 25 hours long). Raises ValidationFailed for a day out of range."""
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValidationFailed(
            "The date is out of range.",
            details=[
                {
                    "loc": ["query", "date"],
                    "msg": f"Between {FIRST_DAY} and {LAST_DAY}.",
                    "type": "value_error",
                }
            ],
        )
    zone = report_service.org_zone(org.timezone)
    start = report_service.to_instant(day, zone)
    end = report_service.to_instant(day + timedelta(days=1), zone)
    return start.astimezone(UTC), end.astimezone(UTC)


async def list_fleet_positions(
    session: AsyncSession, org: Organization, now: datetime | None = None
) -> list[FleetPositionRead]:
    """Every vehicle of the organization with a fix: its latest one, name and status;
    ascending by fix time then vehicle id."""
    rows = await position_service.list_org_latest_positions(SessionReads(session), org.id)
    if not rows:
        return []
    ids = [uuid.UUID(row.vehicle_id) for row in rows]
    found = await device_service.find_devices(session, ids)
    devices = {device_id: d for device_id, d in found.items() if d.org_id == org.id}
    now = now or datetime.now(UTC)
    items = []
    for device_id, row in zip(ids, rows, strict=True):
        device = devices.get(device_id)
        if device is None:  # transferred out between the two reads
            continue
        items.append(
            FleetPositionRead(
                vehicle_id=device.id,
                unique_id=device.unique_id,
                name=device.name,
                plate=device.plate,
                disabled=device.disabled,
                status=device_service.status_of(row.fix_time, now),
                fix_time=row.fix_time,
                lat=row.lat,
                lon=row.lon,
                speed=row.speed,
                course=row.course,
            )
        )
    return items


async def _every_page(
    read: Callable[[paging.PageRequest], Awaitable[paging.PageResult[ItemT]]],
) -> list[ItemT]:
    items: list[ItemT] = []
    page = DAY_PAGE
    while True:
        result = await read(page)
        items.extend(result.items)
        if result.next_cursor is None:
            return items
        page = paging.PageRequest(limit=page.limit, cursor=result.next_cursor)


async def list_device_day_trips(
    session: AsyncSession, device: Device, day: date
) -> DeviceDay[TripDetail]:
    """The device's trips overlapping ``day`` (its organization's time zone), each with its
    route (``[lon, lat]`` points). Raises ValidationFailed for a day out of range."""
    org = await org_service.get_organization(session, device.org_id)
    start, end = day_bounds(org, day)
    trips = await _every_page(
        lambda page: trip_service.list_org_segments(
            session, TripRead, org.id, device.id, paging.Window(end=end), page, ending_after=start
        )
    )
    routed = [await trip_service.with_route(session, org.id, trip) for trip in trips]
    return DeviceDay[TripDetail](
        vehicle_id=device.id, day=day, timezone=org.timezone, start=start, end=end, items=routed
    )


async def list_device_day_stops(
    session: AsyncSession, device: Device, day: date
) -> DeviceDay[StopRead]:
    """The device's stops overlapping ``day`` (its organization's time zone). Raises
    ValidationFailed for a day out of range."""
    org = await org_service.get_organization(session, device.org_id)
    start, end = day_bounds(org, day)
    stops = await _every_page(
        lambda page: trip_service.list_org_segments(
            session, StopRead, org.id, device.id, paging.Window(end=end), page, ending_after=start
        )
    )
    return DeviceDay[StopRead](
        vehicle_id=device.id, day=day, timezone=org.timezone, start=start, end=end, items=stops
    )


async def list_recent_alerts(
    session: AsyncSession, org: Organization, hours: int, now: datetime | None = None
) -> list[AlertRead]:
    """The organization's alerts of the last ``hours`` (the newest 500 at most), ascending by
    ``occurred_at``."""
    since = (now or datetime.now(UTC)) - timedelta(hours=hours)
    newest_first = paging.PageRequest(
        limit=MAX_ALERT_PINS, sort=paging.Sort("occurred_at", descending=True)
    )
    result = await alert_service.list_org_alerts(
        session, org.id, AlertFilters(), paging.Window(start=since), newest_first
    )
    return list(reversed(result.items))
