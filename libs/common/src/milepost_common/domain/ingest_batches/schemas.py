"""What ingest answers and reads back: the 202 body, the batch shape, the item codes; then the
operators' views of batches (every organization's, with the rejected items)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from milepost_common.domain.ingest_batches.models import BatchSource, BatchStatus
from milepost_common.pagination import DEFAULT_LIMIT, MAX_LIMIT


class ItemCode(StrEnum):
    """Why one item of a batch was rejected (DESIGN.md "Ingest")."""

    INVALID_FIELD = "invalid_field"
    UNKNOWN_DEVICE = "unknown_device"
    INVALID_COORDINATES = "invalid_coordinates"
    FIX_TIME_IN_FUTURE = "fix_time_in_future"
    FIX_TIME_TOO_OLD = "fix_time_too_old"
    IMPLAUSIBLE_SPEED = "implausible_speed"
    BEFORE_TRANSFER = "before_transfer"


class PositionCreate(BaseModel):
    """One fix as pushed: what the OpenAPI documents. The items themselves are checked one
    by one (``validation.py``), so one bad item is rejected with its code, not the batch."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "device_id": "358240051111110",
                    "fix_time": "2026-03-01T08:15:30Z",
                    "lat": 52.5208,
                    "lon": 13.4094,
                    "speed": 42.0,
                    "course": 90.0,
                    "altitude": 34.0,
                    "accuracy": 5.0,
                    "attributes": {"ignition": True, "battery": 87},
                }
            ]
        }
    )

    device_id: str = Field(min_length=1, max_length=128, description="The device's unique_id.")
    fix_time: AwareDatetime = Field(description="ISO 8601 with a UTC offset.")
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    speed: float | None = Field(None, ge=0, description="km/h")
    course: float | None = Field(None, ge=0, le=360, description="Degrees from north.")
    altitude: float | None = Field(None, description="Meters.")
    accuracy: float | None = Field(None, ge=0, description="Meters.")
    attributes: dict[str, Any] = Field(
        default_factory=dict,
        description="Known keys: battery (%), ignition, charge, motion (booleans), odometer (m), "
        "hdop, driver_unique_id, alarm; others are kept as sent.",
    )


class ItemError(BaseModel):
    index: int = Field(description="0-based; for NDJSON, among the non-blank lines.")
    code: ItemCode
    message: str


class BatchAccepted(BaseModel):
    """The 202 answer: ``accepted + rejected + duplicates`` equals the number of items."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "batch_id": "0b7c6f1e-5d2a-4c1b-9a8e-3f2d1c0b9a87",
                    "accepted": 998,
                    "rejected": 1,
                    "duplicates": 1,
                    "errors": [
                        {"index": 17, "code": "unknown_device", "message": "Unknown device."}
                    ],
                }
            ]
        }
    )

    batch_id: uuid.UUID
    accepted: int = Field(description="Fixes newly stored.")
    rejected: int
    duplicates: int = Field(description="Repeated within the batch or already stored.")
    errors: list[ItemError]


class IngestBatchRead(BaseModel):
    """A batch as ``GET /ingest/v1/batches/{batch_id}`` shows it."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    status: BatchStatus
    source: BatchSource
    received_at: datetime
    processed_at: datetime | None
    accepted: int
    rejected: int
    duplicates: int
    errors: list[ItemError]
    attempts: int
    last_error: str | None


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
