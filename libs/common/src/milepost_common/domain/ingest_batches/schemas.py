"""What ingest answers and reads back: the 202 body, the batch shape, the item codes."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from milepost_common.domain.ingest_batches.models import BatchSource, BatchStatus


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
