"""Trips and stops, materialized by the worker from the positions."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from milepost_api.deps import AUTHENTICATED, CurrentUser, WindowDep, page_params
from milepost_api.http_cache import HISTORY, cache_control
from milepost_common.domain import paging
from milepost_common.domain.devices.errors import DeviceNotFound
from milepost_common.domain.trips import service as trip_service
from milepost_common.domain.trips.errors import TripNotFound
from milepost_common.domain.trips.schemas import StopRead, TripDetail, TripRead
from milepost_common.errors import Unauthorized, ValidationFailed
from milepost_common.pagination import Page
from milepost_common.web.deps import SessionDep
from milepost_common.web.errors import error_responses

router = APIRouter(prefix="/v1", tags=["trips"], responses=AUTHENTICATED)

VehicleFilter = Annotated[
    uuid.UUID | None, Query(description="Only this vehicle's (404 if not in your fleet).")
]
TripsPage = Annotated[
    paging.PageRequest, Depends(page_params(trip_service.TRIP_SORTABLE, "start_time"))
]
StopsPage = Annotated[
    paging.PageRequest, Depends(page_params(trip_service.STOP_SORTABLE, "start_time"))
]


@router.get(
    "/trips",
    summary="List trips",
    responses=error_responses(Unauthorized, DeviceNotFound, ValidationFailed),
)
@cache_control(HISTORY)
async def list_trips(
    user: CurrentUser,
    session: SessionDep,
    window: WindowDep,
    page: TripsPage,
    vehicle_id: VehicleFilter = None,
) -> Page[TripRead]:
    """Ascending by `start_time`; `from`/`to` half-open on `start_time`. The open trip of
    a moving vehicle has `end_time` null."""
    result = await trip_service.list_trips(session, user, vehicle_id, window, page)
    return Page(items=result.items, next_cursor=result.next_cursor)


@router.get(
    "/trips/{trip_id}",
    summary="Get a trip with its route",
    responses=error_responses(Unauthorized, TripNotFound, ValidationFailed),
)
@cache_control(HISTORY)
async def get_trip(user: CurrentUser, trip_id: uuid.UUID, session: SessionDep) -> TripDetail:
    """The route is the trip's fixes as a GeoJSON LineString ([lon, lat])."""
    return await trip_service.get_trip(session, user, trip_id)


@router.get(
    "/stops",
    summary="List stops",
    tags=["trips"],
    responses=error_responses(Unauthorized, DeviceNotFound, ValidationFailed),
)
@cache_control(HISTORY)
async def list_stops(
    user: CurrentUser,
    session: SessionDep,
    window: WindowDep,
    page: StopsPage,
    vehicle_id: VehicleFilter = None,
) -> Page[StopRead]:
    """Ascending by `start_time`; `from`/`to` half-open on `start_time`."""
    result = await trip_service.list_stops(session, user, vehicle_id, window, page)
    return Page(items=result.items, next_cursor=result.next_cursor)
