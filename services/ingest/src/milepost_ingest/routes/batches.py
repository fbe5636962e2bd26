"""``GET /ingest/v1/batches/{batch_id}``: a batch of the key's organization."""

from __future__ import annotations

from fastapi import APIRouter

from milepost_common.domain.ingest_batches.errors import BatchNotFound
from milepost_common.domain.ingest_batches.schemas import IngestBatchRead
from milepost_common.errors import (
    Forbidden,
    RateLimited,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from milepost_common.web.errors import error_responses
from milepost_ingest.deps import BatchDep

router = APIRouter(prefix="/v1", tags=["batches"])


@router.get(
    "/batches/{batch_id}",
    summary="Read a batch",
    description="Status, counts and item errors of a batch pushed with a key of the same "
    "organization (any other batch: 404).",
    responses=error_responses(
        Unauthorized, Forbidden, BatchNotFound, ValidationFailed, RateLimited, Unavailable
    ),
)
async def get_batch(batch: BatchDep) -> IngestBatchRead:
    return IngestBatchRead.model_validate(batch)
