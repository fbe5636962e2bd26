"""Trip and stop DTOs of the public API (``vehicle_id`` is the device's id)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from milepost_common import units
from milepost_common.domain.devices.schemas import VEHICLE_NAME
from milepost_common.units import Kmh, Metres, Seconds

TRIP_EXAMPLE: dict[str, Any] = {
    "id": "5d0f4a8e-2b7c-4d1e-9a3f-6c8b1e2d4f70",
    "vehicle_id": "0b9e4d0c-6a55-4a8e-9f0e-5f2a4f3b8c11",
    "vehicle_name": "Van 7",
    "start_time": "2026-03-01T07:02:10Z",
    "end_time": "2026-03-01T07:41:55Z",
    "start_lat": 52.52,
    "start_lon": 13.405,
    "end_lat": 52.4,
    "end_lon": 13.06,
    "distance_m": 28450.0,
    "duration_s": 2385,
    "avg_speed": 42.9,
    "max_speed": 96.0,
}


class TripRead(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"example": TRIP_EXAMPLE})

    id: uuid.UUID
    vehicle_id: uuid.UUID = Field(validation_alias=AliasChoices("vehicle_id", "device_id"))
    vehicle_name: str | None = Field(None, description=VEHICLE_NAME)
    start_time: datetime
    end_time: datetime | None = Field(description="Null while the trip is still open.")
    start_lat: float
    start_lon: float
    end_lat: float
    end_lon: float
    distance_m: Metres = Field(description=units.METRES)
    duration_s: Seconds = Field(description=units.SECONDS)
    avg_speed: Kmh = Field(description=units.KMH)
    max_speed: Kmh = Field(description=units.KMH)


class LineString(BaseModel):
    type: Literal["LineString"] = "LineString"
    coordinates: list[tuple[float, float]] = Field(description="[lon, lat] pairs in time order.")


class TripDetail(TripRead):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                **TRIP_EXAMPLE,
                "route": {
                    "type": "LineString",
                    "coordinates": [[13.405, 52.52], [13.3, 52.48], [13.06, 52.4]],
                },
            }
        },
    )

    route: LineString = Field(description="The trip's fixes as a GeoJSON LineString.")


class StopRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "id": "9a1e2f3b-4c5d-4e6f-8a7b-0c1d2e3f4a5b",
                "vehicle_id": "0b9e4d0c-6a55-4a8e-9f0e-5f2a4f3b8c11",
                "vehicle_name": "Van 7",
                "start_time": "2026-03-01T07:41:55Z",
                "end_time": "2026-03-01T09:10:00Z",
                "lat": 52.4,
                "lon": 13.06,
                "duration_s": 5285,
            }
        },
    )

    id: uuid.UUID
    vehicle_id: uuid.UUID = Field(validation_alias=AliasChoices("vehicle_id", "device_id"))
    vehicle_name: str | None = Field(None, description=VEHICLE_NAME)
    start_time: datetime
    end_time: datetime | None = Field(description="Null while the vehicle is still there.")
    lat: float
    lon: float
    duration_s: Seconds = Field(description=units.SECONDS)
