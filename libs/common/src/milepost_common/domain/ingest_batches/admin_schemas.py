"""Operator-side views of ingest batches: every organization's, with the rejected items."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from milepost_common.domain.ingest_batches.models import BatchSource, BatchStatus
from milepost_common.domain.ingest_batches.schemas import IngestBatchRead
from milepost_common.pagination import DEFAULT_LIMIT, MAX_LIMIT


class BatchSummary(IngestBatchRead):
    """The public batch shape plus what an operator needs to find it."""

    org_id: uuid.UUID
    api_key_id: uuid.UUID | None
    idempotency_key: str | None


class BatchDetail(BatchSummary):
    rejected_items: list[dict[str, Any]] = Field(
        description="The rejected items as sent, each with its `index` and `code` (kept 7 days)."
    )
    rejected_items_expire_at: datetime | None
    device_ids: list[str]
    queued_at: datetime | None = Field(description="The last publish attempt.")
    processing_started_at: datetime | None
    lease_holder: str | None = Field(
        description="The worker child processing the batch (`host:pid:random`), while it does."
    )
    lease_expires_at: datetime | None = Field(
        description="Renewed while the holder works; once past, the reconciler sends the batch "
        "again at its next run."
    )


class BatchReplayed(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    status: BatchStatus


class BatchesReplayed(BaseModel):
    items: list[BatchReplayed]


class OsmandDevice(BaseModel):
    """A device's OsmAnd batches (one fix each) summed up: what the operator's list shows
    instead of a row per fix."""

    org_id: uuid.UUID
    device_id: uuid.UUID | None = Field(
        description="The registered device whose fixes were stored."
    )
    unique_id: str | None = Field(
        description="The device's unique id (as sent, for a batch whose fix was rejected)."
    )
    name: str | None
    batches: int
    accepted: int
    rejected: int
    last_received_at: datetime
    failed: int = Field(description="Batches whose processing failed.")
    last_failed_id: uuid.UUID | None = Field(description="The latest of them.")


class BatchSort(StrEnum):
    RECEIVED_AT = "received_at"
    RECEIVED_AT_DESC = "-received_at"


class BatchFilters(BaseModel):
    org_id: uuid.UUID | None = None
    org_name: str | None = Field(
        None, max_length=200, description="Part of the organization's name (case-insensitive)."
    )
    device: str | None = Field(
        None,
        max_length=128,
        description="Part of a device's name or unique id: batches with a fix of such a device "
        "stored or rejected.",
    )
    source: BatchSource | None = None
    status: BatchStatus | None = None
    from_: datetime | None = Field(None, alias="from", description="received_at ≥ this.")
    to: datetime | None = Field(None, description="received_at < this.")
    has_rejected: bool | None = Field(None, description="Only batches with rejected items.")
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = None
    sort: BatchSort = BatchSort.RECEIVED_AT

    model_config = ConfigDict(populate_by_name=True)
