"""Report DTOs: the per-vehicle, per-day summary."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from milepost_common import units
from milepost_common.domain.devices.schemas import VEHICLE_NAME, VEHICLE_PLATE
from milepost_common.units import Kmh, Metres, Seconds


class GroupBy(StrEnum):
    DAY = "day"


class SummaryRow(BaseModel):
    vehicle_id: uuid.UUID
    vehicle_name: str | None = Field(description=VEHICLE_NAME)
    vehicle_plate: str | None = Field(description=VEHICLE_PLATE)
    date: dt.date = Field(description="The day in the organization's time zone.")
    distance_m: Metres = Field(
        description=f"Sum of the distances of trips that started that day. {units.METRES}"
    )
    driving_time_s: Seconds = Field(
        description=f"Sum of the durations of those trips. {units.SECONDS}"
    )
    stopped_time_s: Seconds = Field(
        description="Time stopped between trips: the durations of the stops begun that day"
        f" (ignition on or off). {units.SECONDS}"
    )
    idle_time_s: Seconds = Field(
        description="Deprecated: the same value as `stopped_time_s` (time stopped between"
        " trips, not the ignition-on time the `idle` alert watches); use `stopped_time_s`.",
        json_schema_extra={"deprecated": True},
    )
    stops: int = Field(description="Stops begun that day.")
    max_speed: Kmh | None = Field(description=f"Null without trips. {units.KMH}")
    alerts: int = Field(description="Alerts that occurred that day.")


class SummaryReport(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "timezone": "Europe/Berlin",
                "group_by": "day",
                "from": "2026-02-28T23:00:00Z",
                "to": "2026-03-01T23:00:00Z",
                "items": [
                    {
                        "vehicle_id": "0b9e4d0c-6a55-4a8e-9f0e-5f2a4f3b8c11",
                        "vehicle_name": "Van 7",
                        "vehicle_plate": "B-MP 42",
                        "date": "2026-03-01",
                        "distance_m": 84210.4,
                        "driving_time_s": 9340,
                        "stopped_time_s": 22110,
                        "idle_time_s": 22110,
                        "stops": 6,
                        "max_speed": 112.3,
                        "alerts": 2,
                    }
                ],
            }
        },
        populate_by_name=True,
    )

    timezone: str = Field(description="The organization's IANA time zone that cuts the days.")
    group_by: GroupBy
    start: dt.datetime = Field(alias="from", description="The report's start, as resolved (UTC).")
    end: dt.datetime = Field(alias="to", description="Its exclusive end, as resolved (UTC).")
    items: list[SummaryRow] = Field(description="Ascending by date, then vehicle id.")
