"""Vehicle DTOs of the public API (the table is ``devices``), then the operators' views of
devices (``Device*``: every organization's devices, CSV import, transfer)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from milepost_common.pagination import DEFAULT_LIMIT, MAX_LIMIT
from milepost_common.units import Kmh

# Outputs that name a vehicle by id carry its name (DESIGN.md), never one another
# organization chose (DECISIONS.md, device transfer).
VEHICLE_NAME = (
    "The vehicle's name; null for a row of an earlier tenure (the device has since moved to"
    " another organization, or left and came back)."
)
VEHICLE_PLATE = (
    "The vehicle's plate; null without one, and, like `vehicle_name`, for a row of an earlier"
    " tenure."
)


class VehicleStatus(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    UNKNOWN = "unknown"


class VehicleRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": "0b9e4d0c-6a55-4a8e-9f0e-5f2a4f3b8c11",
                "unique_id": "358240051111110",
                "name": "Van 12",
                "plate": "B-MP 1212",
                "speed_limit_kmh": 90.0,
                "disabled": False,
                "last_fix_time": "2026-03-01T08:15:00Z",
                "status": "online",
            }
        }
    )

    id: uuid.UUID
    unique_id: str = Field(description="The tracker's identifier, unique platform-wide.")
    name: str
    plate: str | None
    speed_limit_kmh: Kmh | None
    disabled: bool
    last_fix_time: datetime | None = Field(description="Time of the latest stored fix.")
    status: VehicleStatus = Field(
        description="`online` when the latest fix is recent, `unknown` before the first fix."
    )


class VehicleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unique_id: str = Field(min_length=1, max_length=128, examples=["358240051111110"])
    name: str = Field(min_length=1, max_length=200, examples=["Van 12"])
    plate: str | None = Field(None, max_length=32, examples=["B-MP 1212"])
    speed_limit_kmh: float | None = Field(None, gt=0, le=400)


class VehicleUpdate(BaseModel):
    """Only the fields sent change; ``null`` clears plate and speed limit."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    plate: str | None = Field(None, max_length=32)
    speed_limit_kmh: float | None = Field(None, gt=0, le=400)
    disabled: bool | None = None


class VehicleFilters(BaseModel):
    q: str | None = Field(None, max_length=200, description="Search name, plate or unique_id.")
    disabled: bool | None = None
    status: VehicleStatus | None = None


MAX_IMPORT_ROWS = 10_000
IMPORT_COLUMNS = ("unique_id", "name", "plate", "speed_limit_kmh")


class DeviceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    org_id: uuid.UUID
    unique_id: str
    name: str
    plate: str | None
    speed_limit_kmh: Kmh | None
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
