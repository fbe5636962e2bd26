"""Vehicles: the organization's fleet (``devices`` in the schema)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from milepost_api.deps import AUTHENTICATED, CurrentUser, ManagerUser, OwnerUser, page_params
from milepost_api.http_cache import REVALIDATE, cache_control
from milepost_common.domain import paging
from milepost_common.domain.devices import service as device_service
from milepost_common.domain.devices.errors import (
    DeviceLimitReached,
    DeviceNotFound,
    DeviceUniqueIdTaken,
)
from milepost_common.domain.devices.schemas import (
    VehicleCreate,
    VehicleFilters,
    VehicleRead,
    VehicleStatus,
    VehicleUpdate,
)
from milepost_common.errors import Forbidden, Unauthorized, ValidationFailed
from milepost_common.pagination import Page
from milepost_common.web.deps import SessionDep
from milepost_common.web.errors import error_responses

router = APIRouter(prefix="/v1/vehicles", tags=["vehicles"], responses=AUTHENTICATED)

VehiclePage = Annotated[
    paging.PageRequest, Depends(page_params(device_service.SORTABLE, "created_at"))
]


async def vehicle_filters(
    q: Annotated[
        str | None, Query(max_length=200, description="Part of the name, plate or unique_id.")
    ] = None,
    disabled: bool | None = None,
    status: VehicleStatus | None = None,
) -> VehicleFilters:
    return VehicleFilters(q=q, disabled=disabled, status=status)


@router.get(
    "",
    summary="List vehicles",
    responses=error_responses(Unauthorized, ValidationFailed),
)
@cache_control(REVALIDATE)
async def list_vehicles(
    user: CurrentUser,
    session: SessionDep,
    filters: Annotated[VehicleFilters, Depends(vehicle_filters)],
    page: VehiclePage,
) -> Page[VehicleRead]:
    """Search by name, plate or unique id; filter by `disabled` and `status`; sort by
    `created_at` (default), `name` or `unique_id`."""
    result = await device_service.list_vehicles(session, user, filters, page)
    return Page(items=result.items, next_cursor=result.next_cursor)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Register a vehicle",
    responses=error_responses(
        Unauthorized, Forbidden, DeviceUniqueIdTaken, DeviceLimitReached, ValidationFailed
    ),
)
async def register_device(user: OwnerUser, body: VehicleCreate, session: SessionDep) -> VehicleRead:
    """Owners only. `unique_id` is the tracker's identifier (unique platform-wide); ingest
    accepts fixes for it from now on."""
    device = await device_service.register_device(session, user, body)
    return device_service.to_read(device, None)


@router.get(
    "/{vehicle_id}",
    summary="Get a vehicle",
    responses=error_responses(Unauthorized, DeviceNotFound, ValidationFailed),
)
@cache_control(REVALIDATE)
async def get_vehicle(user: CurrentUser, vehicle_id: uuid.UUID, session: SessionDep) -> VehicleRead:
    """With its latest fix time and online status."""
    return await device_service.get_vehicle(session, user, vehicle_id)


@router.patch(
    "/{vehicle_id}",
    summary="Update a vehicle",
    responses=error_responses(Unauthorized, Forbidden, DeviceNotFound, ValidationFailed),
)
async def update_device(
    user: ManagerUser, vehicle_id: uuid.UUID, body: VehicleUpdate, session: SessionDep
) -> VehicleRead:
    """Managers and owners. Only the fields sent change; `null` clears plate or speed limit."""
    await device_service.update_device(session, user, vehicle_id, body)
    return await device_service.get_vehicle(session, user, vehicle_id)
