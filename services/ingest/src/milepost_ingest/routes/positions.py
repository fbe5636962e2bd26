"""``POST /ingest/v1/positions``: a batch of fixes as JSON or NDJSON, optionally gzip."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Response

from milepost_common.domain.ingest_batches.errors import IdempotencyKeyReused
from milepost_common.domain.ingest_batches.schemas import BatchAccepted, PositionCreate
from milepost_common.errors import (
    BatchTooLarge,
    Forbidden,
    MalformedBody,
    RateLimited,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    ValidationFailed,
)
from milepost_common.web.errors import error_responses
from milepost_ingest.deps import ContextDep, IngestKey, SubmissionDep

router = APIRouter(prefix="/v1", tags=["positions"])

_POSITION = PositionCreate.model_json_schema()
_EXAMPLE = _POSITION["examples"][0]
_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "Up to 10,000 positions. `Content-Encoding: gzip` is accepted. A leading "
    "UTF-8 byte order mark (EF BB BF, after gzip decoding) is ignored, in JSON and NDJSON; a "
    "lone UTF-16 surrogate escape in a string (`\\ud83d`, half an emoji) is read as U+FFFD. Each "
    "item is checked on its own: an invalid item is rejected with its code, the others are "
    "stored.",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["positions"],
                "properties": {"positions": {"type": "array", "minItems": 1, "items": _POSITION}},
            },
            "example": {"positions": [_EXAMPLE]},
        },
        "application/x-ndjson": {
            "schema": {"type": "string", "description": "One position object per line."},
            "example": orjson.dumps(_EXAMPLE).decode() + "\n",
        },
    },
}


@router.post(
    "/positions",
    status_code=202,
    summary="Push a batch of positions",
    description="Stores the valid fixes (repeats are counted as duplicates, never stored "
    "twice) and answers once they are committed; processing follows asynchronously.",
    response_model=BatchAccepted,
    responses=error_responses(
        MalformedBody,
        Unauthorized,
        Forbidden,
        IdempotencyKeyReused,
        BatchTooLarge,
        UnsupportedMediaType,
        ValidationFailed,
        RateLimited,
        Unavailable,
    ),
    openapi_extra={"requestBody": _REQUEST_BODY},
)
async def ingest_positions(
    submission: SubmissionDep, principal: IngestKey, ctx: ContextDep
) -> Response:
    outcome = await ctx.pipeline.ingest_batch(principal, submission)
    headers = {"Location": f"/ingest/v1/batches/{outcome.batch_id}"}
    if not outcome.created:
        headers["Idempotent-Replayed"] = "true"
    return Response(
        orjson.dumps(outcome.response), 202, headers=headers, media_type="application/json"
    )
