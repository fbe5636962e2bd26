"""``/ingest/osmand/{api_key}``: one fix per request in the OsmAnd protocol.

Stock clients cannot set headers, so the key is in the path; the route template (never the
path) is what the access log records. A known device always gets ``200`` with an empty
body, even when its fix is rejected or a duplicate (recorded in the batch): any other
answer makes the phone resend that fix forever.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from milepost_common.errors import (
    BadRequest,
    Forbidden,
    MalformedBody,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from milepost_common.web.errors import error_responses
from milepost_ingest.deps import ContextDep, OsmandFixDep, OsmandKey
from milepost_ingest.osmand import DeviceIdMissing

router = APIRouter(prefix="/osmand", tags=["osmand"])

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class DeviceUnknown(BadRequest):
    default_message = "Unknown device."


class DeviceNotFound(NotFound):
    default_message = "Unknown device."


@router.api_route("/{api_key}/", methods=METHODS, include_in_schema=False, response_class=Response)
@router.api_route(
    "/{api_key}",
    methods=METHODS,
    summary="Push one fix (OsmAnd protocol)",
    description="Parameters in the query string (any method) or a form body, or the JSON "
    "body of the Traccar Client. `id`/`deviceid`; `timestamp` (Unix s or ms, ISO 8601, "
    "`yyyy-MM-dd HH:mm:ss` UTC; the receive time when absent); `lat`/`lon` or "
    "`location=lat,lon`; `speed` (knots); `bearing`/`heading`; `altitude`; `accuracy`; "
    "`hdop`; `batt`; `charge`; `driverUniqueId`; any other parameter becomes an attribute. "
    "Unknown device: 400 (404 for the JSON body). Also served with a trailing slash.",
    response_class=Response,
    responses={
        200: {"description": "Stored, or recorded as rejected or duplicate in its batch."},
        **error_responses(
            DeviceIdMissing,
            MalformedBody,
            Unauthorized,
            Forbidden,
            DeviceNotFound,
            RateLimited,
            Unavailable,
        ),
    },
)
async def ingest_osmand(principal: OsmandKey, fix: OsmandFixDep, ctx: ContextDep) -> Response:
    if not await ctx.coalescer.submit(principal, fix.item):
        raise DeviceNotFound() if fix.json_form else DeviceUnknown()
    return Response(status_code=200)
