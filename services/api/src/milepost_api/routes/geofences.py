"""Geofences: circles and polygons the alert rules refer to."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, status

from milepost_api.deps import AUTHENTICATED, ContextDep, CurrentUser, ManagerUser, page_params
from milepost_api.http_cache import REVALIDATE, cache_control
from milepost_common.domain import paging
from milepost_common.domain.geofences import service as geofence_service
from milepost_common.domain.geofences.errors import (
    GeofenceInUse,
    GeofenceNotFound,
    GeofenceVerticesLimitReached,
)
from milepost_common.domain.geofences.schemas import GeofenceCreate, GeofenceRead, GeofenceUpdate
from milepost_common.errors import Forbidden, Unauthorized, ValidationFailed
from milepost_common.pagination import Page
from milepost_common.web.deps import SessionDep
from milepost_common.web.errors import error_responses

router = APIRouter(prefix="/v1/geofences", tags=["geofences"], responses=AUTHENTICATED)

GeofencesPage = Annotated[
    paging.PageRequest, Depends(page_params(("created_at", "name"), "created_at"))
]
NotFound = GeofenceNotFound


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a geofence",
    responses=error_responses(
        Unauthorized, Forbidden, GeofenceVerticesLimitReached, ValidationFailed
    ),
)
async def create_geofence(
    user: ManagerUser, body: GeofenceCreate, session: SessionDep, ctx: ContextDep
) -> GeofenceRead:
    """Managers and owners. A GeoJSON `Polygon` ([lon, lat], closed rings) or a `Point`
    with `radius_m` > 0.

    An organization's geofences hold at most 200,000 vertices in all by default (a server
    setting; a circle counts one, a ring's closing position too): a geometry that would go
    over answers 409."""
    limit = ctx.settings.api.max_geofence_vertices_per_org
    geofence = await geofence_service.create_geofence(session, user, body, max_vertices=limit)
    return GeofenceRead.model_validate(geofence)


@router.get("", summary="List geofences", responses=error_responses(Unauthorized, ValidationFailed))
@cache_control(REVALIDATE)
async def list_geofences(
    user: CurrentUser, session: SessionDep, page: GeofencesPage
) -> Page[GeofenceRead]:
    """Ascending by `created_at` (or `sort=name`)."""
    result = await geofence_service.list_geofences(session, user, page)
    return Page(
        items=[GeofenceRead.model_validate(g) for g in result.items],
        next_cursor=result.next_cursor,
    )


@router.get(
    "/{geofence_id}",
    summary="Get a geofence",
    responses=error_responses(Unauthorized, NotFound, ValidationFailed),
)
@cache_control(REVALIDATE)
async def get_geofence(
    user: CurrentUser, geofence_id: uuid.UUID, session: SessionDep
) -> GeofenceRead:
    """404 for a geofence of another organization, as for a missing one."""
    return GeofenceRead.model_validate(
        await geofence_service.get_geofence(session, user, geofence_id)
    )


@router.patch(
    "/{geofence_id}",
    summary="Update a geofence",
    responses=error_responses(
        Unauthorized, Forbidden, NotFound, GeofenceVerticesLimitReached, ValidationFailed
    ),
)
async def update_geofence(
    user: ManagerUser,
    geofence_id: uuid.UUID,
    body: GeofenceUpdate,
    session: SessionDep,
    ctx: ContextDep,
) -> GeofenceRead:
    """Managers and owners. Only the fields sent change; a new geometry that would take
    the organization's geofences over their vertex limit answers 409, as at creation."""
    limit = ctx.settings.api.max_geofence_vertices_per_org
    geofence = await geofence_service.update_geofence(
        session, user, geofence_id, body, max_vertices=limit
    )
    return GeofenceRead.model_validate(geofence)


@router.delete(
    "/{geofence_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a geofence",
    responses=error_responses(Unauthorized, Forbidden, NotFound, GeofenceInUse, ValidationFailed),
)
async def delete_geofence(user: ManagerUser, geofence_id: uuid.UUID, session: SessionDep) -> None:
    """Managers and owners. 409 while an alert rule still refers to it."""
    await geofence_service.delete_geofence(session, user, geofence_id)
