"""Position DTOs of the public API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from milepost_common import units
from milepost_common.domain.devices.schemas import VEHICLE_NAME, VEHICLE_PLATE
from milepost_common.units import Kmh, Metres


# The rows the read side answers with, as plain tuples with ``attributes`` as JSON text: the
# API embeds them in its answer without decoding and re-encoding them. A history row's
# ``fix_time`` is JSON text too, of the UTC timestamp without its offset, as Postgres writes
# it: ``'"2026-03-01T08:15:00"'``, ``'"2026-03-01T08:15:00.5"'``.
class PositionRow(NamedTuple):
    fix_time: str
    lat: float
    lon: float
    speed: float | None
    course: float | None
    altitude: float | None
    accuracy: float | None
    attributes: str


class LatestRow(NamedTuple):
    vehicle_id: str
    vehicle_name: str
    vehicle_plate: str | None
    fix_time: datetime
    lat: float
    lon: float
    speed: float | None
    course: float | None
    altitude: float | None
    accuracy: float | None
    attributes: str


POSITION_EXAMPLE: dict[str, Any] = {
    "fix_time": "2026-03-01T08:15:00Z",
    "lat": 52.520008,
    "lon": 13.404954,
    "speed": 42.5,
    "course": 90.0,
    "altitude": 34.0,
    "accuracy": 5.0,
    "attributes": {"ignition": True, "battery": 87},
}


class PositionRead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": POSITION_EXAMPLE})

    fix_time: datetime
    lat: float = Field(description="WGS84 latitude, decimal degrees.")
    lon: float = Field(description="WGS84 longitude, decimal degrees.")
    speed: Kmh | None = Field(description=units.KMH)
    course: float | None = Field(description="Degrees clockwise from north.")
    altitude: Metres | None = Field(description=units.METRES)
    accuracy: Metres | None = Field(description=units.METRES)
    attributes: dict[str, Any]


class LatestPositionRead(PositionRead):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "vehicle_id": "0b9e4d0c-6a55-4a8e-9f0e-5f2a4f3b8c11",
                "vehicle_name": "Van 7",
                "vehicle_plate": "B-MP 42",
                **POSITION_EXAMPLE,
            }
        }
    )

    vehicle_id: uuid.UUID
    vehicle_name: str | None = Field(description=VEHICLE_NAME)
    vehicle_plate: str | None = Field(description=VEHICLE_PLATE)
