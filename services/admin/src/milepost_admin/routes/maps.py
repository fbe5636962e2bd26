"""What the console's map polls: an organization's latest positions, a device's trips and
stops of a day, the organization's recent alerts. Support reads; the console's own script
reads with its session cookie instead of a token (see ``support_or_console``)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from milepost_admin.console.deps import SupportOrConsole
from milepost_admin.deps import AUTH_ERRORS
from milepost_common.domain.alerts.schemas import AlertRead
from milepost_common.domain.devices import service as device_service
from milepost_common.domain.devices.errors import DeviceNotFound
from milepost_common.domain.devices.models import Device
from milepost_common.domain.maps import service as map_service
from milepost_common.domain.maps.schemas import DeviceDay, FleetPositionRead
from milepost_common.domain.organizations import service as org_service
from milepost_common.domain.organizations.errors import OrganizationNotFound
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.trips.schemas import StopRead, TripDetail
from milepost_common.errors import ValidationFailed
from milepost_common.pagination import Page
from milepost_common.web.deps import SessionDep
from milepost_common.web.errors import error_responses

router = APIRouter(prefix="/v1", tags=["map"])


async def load_organization(
    _reader: SupportOrConsole, org_id: uuid.UUID, session: SessionDep
) -> Organization:
    return await org_service.get_organization(session, org_id)


async def load_device(
    _reader: SupportOrConsole, device_id: uuid.UUID, session: SessionDep
) -> Device:
    return await device_service.get_any_device(session, device_id)


# The reader is resolved first: 401 and 403 come before 404, as everywhere.
OrganizationDep = Annotated[Organization, Depends(load_organization)]
DeviceDep = Annotated[Device, Depends(load_device)]
Day = Annotated[
    date,
    Query(
        alias="date",
        description="A calendar day (YYYY-MM-DD) in the organization's time zone.",
    ),
]


@router.get(
    "/organizations/{org_id}/positions/latest",
    summary="An organization's latest positions, with names and status",
    responses=error_responses(*AUTH_ERRORS, OrganizationNotFound),
)
async def list_fleet_positions(
    org: OrganizationDep, session: SessionDep
) -> Page[FleetPositionRead]:
    """One item per vehicle with a fix, ascending by `fix_time`; never paged (`next_cursor`
    is null). `status` is online for a fix in the last 10 minutes."""
    return Page(items=await map_service.list_fleet_positions(session, org))


@router.get(
    "/devices/{device_id}/trips",
    summary="A device's trips of a day, with their routes",
    responses=error_responses(*AUTH_ERRORS, DeviceNotFound, ValidationFailed),
)
async def list_device_day_trips(
    device: DeviceDep, day: Day, session: SessionDep
) -> DeviceDay[TripDetail]:
    """The trips that overlap the day in the device's organization's time zone (a trip
    across midnight belongs to both days), ascending by `start_time`, each with its route
    as a GeoJSON LineString of `[lon, lat]` points. Only the device's current organization's
    trips: an earlier tenure's stay with the organization that recorded them."""
    return await map_service.list_device_day_trips(session, device, day)


@router.get(
    "/devices/{device_id}/stops",
    summary="A device's stops of a day",
    responses=error_responses(*AUTH_ERRORS, DeviceNotFound, ValidationFailed),
)
async def list_device_day_stops(
    device: DeviceDep, day: Day, session: SessionDep
) -> DeviceDay[StopRead]:
    """The stops that overlap the day in the device's organization's time zone (where it
    spent the night included), ascending by `start_time`."""
    return await map_service.list_device_day_stops(session, device, day)


@router.get(
    "/organizations/{org_id}/alerts/recent",
    summary="An organization's recent alerts",
    responses=error_responses(*AUTH_ERRORS, OrganizationNotFound, ValidationFailed),
)
async def list_recent_alerts(
    org: OrganizationDep,
    session: SessionDep,
    hours: Annotated[int, Query(ge=1, le=168, description="How far back, in hours.")] = 24,
) -> Page[AlertRead]:
    """The alerts of the last `hours` (the newest 500 at most), ascending by `occurred_at`;
    never paged. An alert without a position has `lat` and `lon` null."""
    return Page(items=await map_service.list_recent_alerts(session, org, hours))
