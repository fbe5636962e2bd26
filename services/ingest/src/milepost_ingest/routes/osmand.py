"""``/ingest/osmand/{api_key}``: one fix per request in the OsmAnd protocol.

Stock clients cannot set headers, so the key is in the path; the route template (never the
path) is what the access log records. A known device always gets ``200`` with an empty
body, even when its fix is rejected or a duplicate (recorded in the batch): any other
answer makes the phone resend that fix forever.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from milepost_common.domain.devices.errors import DeviceNotFound
from milepost_common.errors import (
    Forbidden,
    MalformedBody,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from milepost_common.web.errors import error_responses
from milepost_ingest.deps import ContextDep, OsmandFixDep, OsmandKey
from milepost_ingest.osmand import DeviceIdMissing, DeviceUnknown

router = APIRouter(prefix="/osmand", tags=["osmand"])

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


# The OsmAnd protocol's word for a device the key's organization does not have.
UNKNOWN_DEVICE = "Unknown device."

_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": "Stored, or recorded as rejected or duplicate in its batch (empty)."},
    **error_responses(
        DeviceIdMissing,
        MalformedBody,
        Unauthorized,
        Forbidden,
        DeviceNotFound,
        RateLimited,
        Unavailable,
    ),
}
_PARAMETERS = (
    "`id`/`deviceid`; `timestamp` (Unix s or ms, ISO 8601, `yyyy-MM-dd HH:mm:ss` UTC; the "
    "receive time when absent); `lat`/`lon` or `location=lat,lon`; `speed` (knots); "
    "`bearing`/`heading`; `altitude`; `accuracy`; `hdop`; `batt`; `charge`; `driverUniqueId`; "
    "any other parameter becomes an attribute."
)


def _query(name: str, kind: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": kind},
    }


# Read by the decoder from the raw query string (no FastAPI parameters: any other name is an
# attribute, and a value that cannot be read is recorded as rejected, never refused).
_QUERY: dict[str, Any] = {
    "parameters": [
        _query("id", "string", "The tracker's unique id (or `deviceid`)."),
        _query("deviceid", "string", "The tracker's unique id (or `id`)."),
        _query("timestamp", "string", "Unix s or ms, ISO 8601, or `yyyy-MM-dd HH:mm:ss` UTC."),
        _query("lat", "number", "Latitude, decimal degrees."),
        _query("lon", "number", "Longitude, decimal degrees."),
        _query("location", "string", "`lat,lon` instead of `lat` and `lon`."),
        _query("speed", "number", "Knots."),
        _query("bearing", "number", "Course, degrees (or `heading`)."),
        _query("altitude", "number", "Metres."),
        _query("accuracy", "number", "Metres."),
        _query("batt", "number", "Battery, percent."),
    ]
}
_FORM_OR_JSON: dict[str, Any] = {
    **_QUERY,
    "requestBody": {
        "required": False,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "additionalProperties": {"type": "string"}}
            },
            "application/json": {
                "schema": {"type": "object"},
                "example": {
                    "location": {
                        "timestamp": "2025-06-15T13:45:12.862Z",
                        "coords": {"latitude": 37.4219983, "longitude": -122.084, "speed": 0},
                        "is_moving": False,
                        "battery": {"level": 1, "is_charging": False},
                    },
                    "device_id": "48241179",
                },
            },
        },
    },
}


# Stock clients differ in method and in a trailing slash: every variant is served; GET and
# POST are documented (one operation id each: the kit names operations after routes).
@router.api_route(
    "/{api_key}/",
    methods=METHODS,
    include_in_schema=False,
    response_class=Response,
    name="ingest_osmand_slash",
)
@router.api_route(
    "/{api_key}",
    methods=[method for method in METHODS if method not in ("GET", "POST")],
    include_in_schema=False,
    response_class=Response,
    name="ingest_osmand_other",
)
@router.post(
    "/{api_key}",
    summary="Push one fix (OsmAnd protocol) as a form or the Traccar Client's JSON",
    description=f"A form body, or the JSON body of the Traccar Client. {_PARAMETERS} "
    "Unknown device: 400 (404 for the JSON body).",
    response_class=Response,
    responses=_ANSWERS,
    name="ingest_osmand_body",
    openapi_extra=_FORM_OR_JSON,
)
@router.get(
    "/{api_key}",
    summary="Push one fix (OsmAnd protocol) in the query string",
    description=f"Parameters in the query string (any method works). {_PARAMETERS} "
    "Unknown device: 400. Also served with a trailing slash.",
    response_class=Response,
    responses=_ANSWERS,
    openapi_extra=_QUERY,
)
async def ingest_osmand(fix: OsmandFixDep, principal: OsmandKey, ctx: ContextDep) -> Response:
    if not await ctx.coalescer.submit(principal, fix.item):
        raise DeviceNotFound(UNKNOWN_DEVICE) if fix.json_form else DeviceUnknown()
    return Response(status_code=200)
