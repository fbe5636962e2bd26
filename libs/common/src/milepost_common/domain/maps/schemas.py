"""What the map reads: the fleet's latest fixes with names, a device's day, alert pins."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from milepost_common import units
from milepost_common.domain.devices.schemas import VehicleStatus
from milepost_common.units import Kmh

ItemT = TypeVar("ItemT")


class FleetPositionRead(BaseModel):
    """One vehicle's latest fix, with what a map labels it by."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "vehicle_id": "0b9e4d0c-6a55-4a8e-9f0e-5f2a4f3b8c11",
                "unique_id": "tracker-0042",
                "name": "Van 7",
                "plate": "B-MP 42",
                "disabled": False,
                "status": "online",
                "fix_time": "2026-03-01T08:15:00Z",
                "lat": 52.520008,
                "lon": 13.404954,
                "speed": 42.5,
                "course": 90.0,
            }
        }
    )

    vehicle_id: uuid.UUID
    unique_id: str
    name: str
    plate: str | None
    disabled: bool
    status: VehicleStatus = Field(description="online: a fix in the last 10 minutes.")
    fix_time: datetime
    lat: float = Field(description="WGS84 latitude, decimal degrees.")
    lon: float = Field(description="WGS84 longitude, decimal degrees.")
    speed: Kmh | None = Field(description=units.KMH)
    course: float | None = Field(description="Degrees clockwise from north.")


class DeviceDay(BaseModel, Generic[ItemT]):
    """A device's items of one day in its organization's time zone: those that overlap
    ``[start, end)`` (a trip that crosses midnight belongs to both days)."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "vehicle_id": "0b9e4d0c-6a55-4a8e-9f0e-5f2a4f3b8c11",
                "day": "2026-03-01",
                "timezone": "Europe/Berlin",
                "start": "2026-02-28T23:00:00Z",
                "end": "2026-03-01T23:00:00Z",
                "items": [],
            }
        }
    )

    vehicle_id: uuid.UUID
    day: date
    timezone: str = Field(description="The organization's IANA time zone.")
    start: datetime = Field(description="The day's first instant (UTC).")
    end: datetime = Field(description="The next day's first instant (UTC).")
    items: list[ItemT] = Field(description="Ascending by `start_time`.")
