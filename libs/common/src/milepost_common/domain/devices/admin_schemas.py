"""Operator-side device models: every organization's devices, CSV import, transfer."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from milepost_common.pagination import DEFAULT_LIMIT, MAX_LIMIT

MAX_IMPORT_ROWS = 10_000
IMPORT_COLUMNS = ("unique_id", "name", "plate", "speed_limit_kmh")


class DeviceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    org_id: uuid.UUID
    unique_id: str
    name: str
    plate: str | None
    speed_limit_kmh: float | None
    disabled: bool
    created_at: datetime
    updated_at: datetime


class DeviceSort(StrEnum):
    CREATED_AT = "created_at"
    CREATED_AT_DESC = "-created_at"
    NAME = "name"
    NAME_DESC = "-name"
    UNIQUE_ID = "unique_id"
    UNIQUE_ID_DESC = "-unique_id"


class DeviceFilters(BaseModel):
    org_id: uuid.UUID | None = None
    org_name: str | None = Field(
        None, max_length=200, description="Part of the organization's name (case-insensitive)."
    )
    q: str | None = Field(None, max_length=200, description="Part of unique_id, name or plate.")
    disabled: bool | None = None
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = None
    sort: DeviceSort = DeviceSort.CREATED_AT


class DeviceTransfer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    org_id: uuid.UUID = Field(description="The organization that receives the device.")


class DeviceUpdate(BaseModel):
    """Only the fields sent change; ``null`` clears plate and speed limit."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"example": {"name": "Van 12", "speed_limit_kmh": 90}},
    )

    name: str | None = Field(None, min_length=1, max_length=200)
    plate: str | None = Field(None, max_length=32)
    speed_limit_kmh: float | None = Field(None, gt=0, le=400)


class ImportRowStatus(StrEnum):
    CREATED = "created"
    FAILED = "failed"


class ImportRowCode(StrEnum):
    INVALID_FIELD = "invalid_field"
    DUPLICATE_IN_FILE = "duplicate_in_file"
    UNIQUE_ID_TAKEN = "unique_id_taken"
    DEVICE_LIMIT = "device_limit"


class ImportRow(BaseModel):
    line: int = Field(description="Line number in the file (the header is line 1).")
    unique_id: str | None
    status: ImportRowStatus
    device_id: uuid.UUID | None = None
    code: ImportRowCode | None = None
    message: str | None = None


class DeviceImportReport(BaseModel):
    created: int
    failed: int
    rows: list[ImportRow]
