"""Reads of trips and stops for the public API (the worker writes them)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain import paging
from milepost_common.domain.base import get_by_id
from milepost_common.domain.devices import service as device_service
from milepost_common.domain.positions import queries as position_queries
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
    result = await device_service.vehicle_history_page(
        session, actor, Trip, "start_time", vehicle_id, window, page
    )
    return paging.PageResult([TripRead.model_validate(t) for t in result.items], result.next_cursor)


async def get_trip(session: AsyncSession, actor: Principal, trip_id: uuid.UUID) -> TripDetail:
    """The trip with its route. Raises TripNotFound when missing or of another organization."""
    trip = await get_by_id(session, Trip, trip_id, TripNotFound, org_id=actor.require_org())
    points = await position_queries.route_of(
        session, trip.device_id, trip.org_id, trip.start_time, trip.end_time
    )
    read = TripRead.model_validate(trip)
    return TripDetail(**read.model_dump(), route=LineString(coordinates=points))


async def list_stops(
    session: AsyncSession,
    actor: Principal,
    vehicle_id: uuid.UUID | None,
    window: paging.Window,
    page: paging.PageRequest,
) -> paging.PageResult[StopRead]:
    """A keyset page of the organization's stops. Raises DeviceNotFound for a foreign
    ``vehicle_id``."""
    result = await device_service.vehicle_history_page(
        session, actor, Stop, "start_time", vehicle_id, window, page
    )
    return paging.PageResult([StopRead.model_validate(s) for s in result.items], result.next_cursor)
