"""Positions: a vehicle's history (keyset pages straight from the partitioned table) and
the fleet's latest fixes (cached in Redis; the worker drops the entry on every new fix).
Both answer GeoJSON to `Accept: application/geo+json`."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from milepost_api import geojson
from milepost_api.deps import (
    AUTHENTICATED,
    CurrentUser,
    WindowDep,
    bearer,
    context_of,
    current_user,
    page_params,
)
from milepost_api.direct import UUID_TEXT, DirectRoute, direct
from milepost_api.http_cache import HISTORY, LIVE, cache_control
from milepost_common.domain import paging
from milepost_common.domain.devices.errors import DeviceNotFound
from milepost_common.domain.positions import service as position_service
from milepost_common.domain.positions.schemas import LatestPositionRead, PositionRead
from milepost_common.errors import RateLimited, Unauthorized, ValidationFailed
from milepost_common.live import latest_positions_key
from milepost_common.pagination import DEFAULT_LIMIT, Page
from milepost_common.web.deps import reads_of
from milepost_common.web.errors import error_responses

router = APIRouter(
    prefix="/v1", tags=["positions"], responses=AUTHENTICATED, route_class=DirectRoute
)

_SORTABLE = ("fix_time",)
PositionsPage = Annotated[
    paging.PageRequest,
    Depends(page_params(_SORTABLE, "fix_time", max_limit=position_service.MAX_POSITIONS_LIMIT)),
]


def _geojson_response(example: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "description": "JSON by default; a GeoJSON FeatureCollection of Points for "
            "`Accept: application/geo+json`.",
            "content": {geojson.GEOJSON: {"schema": {"type": "object"}, "example": example}},
        }
    }


_PAGE_QUERY = frozenset({"limit", "cursor", "sort"})


def _common_page(request: Request) -> tuple[uuid.UUID, paging.PageRequest] | None:
    """The vehicle and page of a history read whose parameters are all plainly valid (a
    canonical id; `limit`, `cursor`, `sort` if any, each a value FastAPI's validators
    accept and read the same); None for any other (`from`/`to` among them)."""
    query = request.query_params
    raw_id: str = request.path_params["vehicle_id"]
    if not _PAGE_QUERY.issuperset(query.keys()) or UUID_TEXT.fullmatch(raw_id) is None:
        return None
    raw_limit, cursor, sort = query.get("limit"), query.get("cursor"), query.get("sort")
    limit = DEFAULT_LIMIT
    if raw_limit is not None:
        if not (raw_limit.isascii() and raw_limit.isdigit() and raw_limit[0] != "0"):
            return None
        limit = int(raw_limit)
        if limit > position_service.MAX_POSITIONS_LIMIT:
            return None
    if (cursor is not None and len(cursor) > 512) or sort not in (None, "fix_time", "-fix_time"):
        return None
    sorted_by = paging.parse_sort(sort, _SORTABLE, "fix_time")
    return uuid.UUID(raw_id), paging.PageRequest(limit=limit, cursor=cursor, sort=sorted_by)


async def _list_positions_directly(request: Request) -> Response | None:
    """``list_positions`` for the common reads, without FastAPI's resolution (``direct``)."""
    common = _common_page(request)
    if common is None:
        return None
    vehicle_id, page = common
    user = await current_user(request, await bearer(request))
    return await list_positions(user, vehicle_id, request, paging.Window(), page)


@router.get(
    "/vehicles/{vehicle_id}/positions",
    summary="A vehicle's position history",
    response_model=Page[PositionRead],
    responses={
        **_geojson_response(geojson.GEOJSON_EXAMPLE),
        **error_responses(Unauthorized, DeviceNotFound, ValidationFailed, RateLimited),
    },
)
@cache_control(HISTORY)
@direct(_list_positions_directly)
async def list_positions(
    user: CurrentUser,
    vehicle_id: uuid.UUID,
    request: Request,
    window: WindowDep,
    page: PositionsPage,
) -> Response:
    """Ascending by `fix_time` (`sort=-fix_time` for newest first), up to 10,000 per page,
    `from`/`to` half-open on `fix_time`."""
    reads = reads_of(request)
    result = await position_service.list_positions(reads, user, vehicle_id, window, page)
    items = geojson.position_items(result.items)
    if geojson.wants_geojson(request.headers):
        return Response(
            geojson.feature_collection(items, result.next_cursor), media_type=geojson.GEOJSON
        )
    return Response(geojson.page_body(items, result.next_cursor), media_type=geojson.JSON)


async def _list_latest_directly(request: Request) -> Response:
    """``list_latest_positions`` without FastAPI's resolution (``direct``): it has no
    parameter but the caller, so every request is a common one."""
    user = await current_user(request, await bearer(request))
    return await list_latest_positions(user, request)


@router.get(
    "/positions/latest",
    summary="The fleet's latest positions",
    response_model=Page[LatestPositionRead],
    responses={
        **_geojson_response(geojson.LATEST_GEOJSON_EXAMPLE),
        **error_responses(Unauthorized, RateLimited),
    },
)
@cache_control(LIVE)
@direct(_list_latest_directly)
async def list_latest_positions(user: CurrentUser, request: Request) -> Response:
    """One item per vehicle with a fix, ascending by `fix_time`, with the vehicle's name
    and plate (GeoJSON: in each feature's properties); never paged (`next_cursor` is
    null). Cached for a few seconds: a renamed vehicle shows its new name within that."""
    ctx, reads = context_of(request), reads_of(request)

    async def compute() -> bytes:
        rows = await position_service.list_latest_positions(reads, user)
        return geojson.page_body(geojson.latest_items(rows), None)

    page = await ctx.responses.cached(
        latest_positions_key(user.require_org()),
        ctx.settings.api.latest_positions_cache_s,
        compute,
    )
    if geojson.wants_geojson(request.headers):
        features = ctx.responses.variant(page, "geojson", geojson.page_as_features)
        return await ctx.responses.response(request, features, geojson.GEOJSON)
    return await ctx.responses.response(request, page, geojson.JSON)
