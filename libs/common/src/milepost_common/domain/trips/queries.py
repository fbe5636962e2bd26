"""Reads of trips and stops for the public API and the admin's map (the worker writes them)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from milepost_common.domain import paging
from milepost_common.domain.base import get_by_id
from milepost_common.domain.devices import names
from milepost_common.domain.devices import service as device_service
from milepost_common.domain.devices.models import Device
from milepost_common.domain.positions import service as position_service
from milepost_common.domain.principals import Principal
from milepost_common.domain.trips.models import Stop, Trip
from milepost_common.domain.trips.schemas import LineString, StopRead, TripDetail, TripRead
from milepost_common.errors import NotFound

TRIP_SORTABLE = ("start_time", "distance_m", "duration_s", "max_speed")
STOP_SORTABLE = ("start_time", "duration_s")


class TripNotFound(NotFound):
    default_message = "Trip not found."


async def list_trips(
    session: AsyncSession,
    actor: Principal,
    vehicle_id: uuid.UUID | None,
    window: paging.Window,
    page: paging.PageRequest,
) -> paging.PageResult[TripRead]:
    """A keyset page of the organization's trips. Raises DeviceNotFound for a foreign
    ``vehicle_id``."""
    return await list_org_trips(session, actor.require_org(), vehicle_id, window, page)


async def list_org_trips(
    session: AsyncSession,
    org_id: uuid.UUID,
    vehicle_id: uuid.UUID | None,
    window: paging.Window,
    page: paging.PageRequest,
    *,
    narrowed: SelectOfScalar[Trip] | None = None,
) -> paging.PageResult[TripRead]:
    """``list_trips`` of an organization named by its id (``narrowed``: further filters)."""
    result = await device_service.org_history_page(
        session, org_id, Trip, "start_time", vehicle_id, window, page, narrowed
    )
    return paging.PageResult(
        [names.read_as(TripRead, item.row, item.vehicle_name) for item in result.items],
        result.next_cursor,
    )


async def get_trip(session: AsyncSession, actor: Principal, trip_id: uuid.UUID) -> TripDetail:
    """The trip with its route. Raises TripNotFound when missing or of another organization."""
    trip = await get_by_id(session, Trip, trip_id, TripNotFound, org_id=actor.require_org())
    device = await session.get(Device, trip.device_id)
    read = names.read_as(TripRead, trip, names.name_of(device, trip.org_id, trip.start_time))
    return await with_route(session, trip.org_id, read)


async def with_route(session: AsyncSession, org_id: uuid.UUID, trip: TripRead) -> TripDetail:
    """The trip and its fixes in the organization (``[lon, lat]``, capped)."""
    points = await position_service.route_of(
        session, trip.vehicle_id, org_id, trip.start_time, trip.end_time
    )
    return TripDetail(**trip.model_dump(), route=LineString(coordinates=points))


async def list_stops(
    session: AsyncSession,
    actor: Principal,
    vehicle_id: uuid.UUID | None,
    window: paging.Window,
    page: paging.PageRequest,
) -> paging.PageResult[StopRead]:
    """A keyset page of the organization's stops. Raises DeviceNotFound for a foreign
    ``vehicle_id``."""
    return await list_org_stops(session, actor.require_org(), vehicle_id, window, page)


async def list_org_stops(
    session: AsyncSession,
    org_id: uuid.UUID,
    vehicle_id: uuid.UUID | None,
    window: paging.Window,
    page: paging.PageRequest,
    *,
    narrowed: SelectOfScalar[Stop] | None = None,
) -> paging.PageResult[StopRead]:
    """``list_stops`` of an organization named by its id (``narrowed``: further filters)."""
    result = await device_service.org_history_page(
        session, org_id, Stop, "start_time", vehicle_id, window, page, narrowed
    )
    return paging.PageResult(
        [names.read_as(StopRead, item.row, item.vehicle_name) for item in result.items],
        result.next_cursor,
    )
