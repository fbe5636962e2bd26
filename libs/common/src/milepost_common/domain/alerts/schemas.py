"""Alert DTOs of the public API."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from milepost_common.domain.alerts.models import AlertType
from milepost_common.domain.devices.schemas import VEHICLE_NAME
from milepost_common.units import Measured


class AlertRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "id": "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f",
                "vehicle_id": "0b9e4d0c-6a55-4a8e-9f0e-5f2a4f3b8c11",
                "vehicle_name": "Van 7",
                "rule_id": "7e8f9a0b-1c2d-4e3f-9a4b-5c6d7e8f9a0b",
                "type": "overspeed",
                "occurred_at": "2026-03-01T07:20:00Z",
                "lat": 52.48,
                "lon": 13.3,
                "details": {"limit_kmh": 90.0, "max_speed": 112.4, "end_time": None},
                "acknowledged_at": None,
                "acknowledged_by": None,
            }
        },
    )

    id: uuid.UUID
    vehicle_id: uuid.UUID = Field(validation_alias=AliasChoices("vehicle_id", "device_id"))
    vehicle_name: str | None = Field(None, description=VEHICLE_NAME)
    rule_id: uuid.UUID
    type: AlertType
    occurred_at: datetime
    lat: float | None
    lon: float | None
    details: Measured = Field(
        description="By type (overspeed: `limit_kmh`, `max_speed`, `end_time`; idle:"
        " `duration_s`, …). Speeds and metres rounded to 0.1, durations (`*_s`) to whole"
        " seconds."
    )
    acknowledged_at: datetime | None
    acknowledged_by: uuid.UUID | None = Field(description="The user who acknowledged it.")


@dataclass(frozen=True, slots=True)
class AlertFilters:
    """Which of an organization's alerts a list shows (None: any): of one vehicle, of a type,
    acknowledged or open."""

    vehicle_id: uuid.UUID | None = None
    alert_type: AlertType | None = None
    acknowledged: bool | None = None
