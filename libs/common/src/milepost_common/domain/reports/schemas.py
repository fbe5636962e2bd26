"""Report DTOs: the per-vehicle, per-day summary."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class GroupBy(StrEnum):
    DAY = "day"


class SummaryRow(BaseModel):
    vehicle_id: uuid.UUID
    date: dt.date = Field(description="The day in the organization's time zone.")
    distance_m: float = Field(description="Sum of the distances of trips that started that day.")
    driving_time_s: float = Field(description="Sum of the durations of those trips.")
    idle_time_s: float = Field(description="Time stopped between trips, for stops begun that day.")
    stops: int = Field(description="Stops begun that day.")
    max_speed: float | None = Field(description="km/h; null without trips.")
    alerts: int = Field(description="Alerts that occurred that day.")


class SummaryReport(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "timezone": "Europe/Berlin",
                "group_by": "day",
                "from": "2026-03-01T00:00:00+01:00",
                "to": "2026-03-02T00:00:00+01:00",
                "items": [
                    {
                        "vehicle_id": "0b9e4d0c-6a55-4a8e-9f0e-5f2a4f3b8c11",
                        "date": "2026-03-01",
                        "distance_m": 84210.0,
                        "driving_time_s": 9340.0,
                        "idle_time_s": 22110.0,
                        "stops": 6,
                        "max_speed": 112.0,
                        "alerts": 2,
                    }
                ],
            }
        },
        populate_by_name=True,
    )

    timezone: str = Field(description="The organization's IANA time zone that cuts the days.")
    group_by: GroupBy
    start: dt.datetime = Field(alias="from")
    end: dt.datetime = Field(alias="to")
    items: list[SummaryRow] = Field(description="Ascending by date, then vehicle id.")
