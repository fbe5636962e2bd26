"""Alert rule DTOs and the parameters of each rule type (validated, defaults filled in)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from milepost_common.domain.alerts.models import AlertType
from milepost_common.errors import ValidationFailed
from milepost_common.units import Measured


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OverspeedParams(_Params):
    limit_kmh: float | None = Field(
        None,
        gt=0,
        le=400,
        description="Defaults to the vehicle's speed limit, then the organization's default."
        " Required while a covered vehicle has neither (the rule is refused with 422 naming"
        " those vehicles).",
    )
    multiplier: float = Field(1.0, gt=0, le=10, description="Alert above limit × multiplier.")
    min_duration_s: int = Field(0, ge=0, le=86_400)


class GeofenceParams(_Params):
    """A fix counts inside or outside once it is farther from the boundary than its accuracy
    (10 m for a fix that states none; at most half a circle's radius): a vehicle parked on
    the edge does not cross it with every fix."""

    geofence_id: uuid.UUID
    min_dwell_s: int = Field(
        0, ge=0, le=86_400, description="Seconds on the new side before the alert is raised."
    )


class IdleParams(_Params):
    min_duration_s: int = Field(gt=0, le=7 * 86_400)


class OfflineParams(_Params):
    after_s: int = Field(gt=0, le=30 * 86_400)


class LowBatteryParams(_Params):
    threshold_pct: float = Field(gt=0, le=100)


PARAMS_BY_TYPE: dict[AlertType, type[_Params]] = {
    AlertType.OVERSPEED: OverspeedParams,
    AlertType.GEOFENCE_ENTER: GeofenceParams,
    AlertType.GEOFENCE_EXIT: GeofenceParams,
    AlertType.IDLE: IdleParams,
    AlertType.OFFLINE: OfflineParams,
    AlertType.LOW_BATTERY: LowBatteryParams,
}


def validate_params(rule_type: AlertType, params: dict[str, Any]) -> _Params:
    """The params of ``rule_type`` with defaults filled in; raises ValidationFailed (422)."""
    try:
        return PARAMS_BY_TYPE[rule_type].model_validate(params)
    except ValidationError as exc:
        raise ValidationFailed(
            f"Invalid params for a {rule_type.value} rule.",
            details=[
                {
                    "loc": ["body", "params", *[str(p) for p in err["loc"]]],
                    "msg": err["msg"],
                    "type": err["type"],
                }
                for err in exc.errors()
            ],
        ) from None


class AlertRuleCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Speeding",
                    "type": "overspeed",
                    "params": {"multiplier": 1.1, "min_duration_s": 30},
                    "vehicle_ids": None,
                },
                {
                    "name": "Left the depot",
                    "type": "geofence_exit",
                    "params": {"geofence_id": "1f2e3d4c-5b6a-4798-8a7b-6c5d4e3f2a1b"},
                    "vehicle_ids": ["0b9e4d0c-6a55-4a8e-9f0e-5f2a4f3b8c11"],
                },
            ]
        },
    )

    name: str = Field(min_length=1, max_length=200)
    type: AlertType
    params: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "By type: overspeed {limit_kmh?, multiplier=1.0, min_duration_s=0}; "
            "geofence_enter|geofence_exit {geofence_id, min_dwell_s=0}; idle {min_duration_s}; "
            "offline {after_s}; low_battery {threshold_pct}. A geofence rule counts a fix "
            "inside or outside once it is farther from the boundary than its accuracy (10 m "
            "when it states none; at most half a circle's radius). An idle alert counts "
            "stopped time with the ignition on (the last `ignition` reported) from the stop's "
            "start, or from the fix that reported the ignition on if that came later."
        ),
    )
    vehicle_ids: list[uuid.UUID] | None = Field(
        None, max_length=10_000, description="The vehicles it applies to; null for all."
    )
    enabled: bool = True


class AlertRuleUpdate(BaseModel):
    """Only the fields sent change; ``params`` are validated against the rule's type."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    params: dict[str, Any] | None = None
    vehicle_ids: list[uuid.UUID] | None = Field(None, max_length=10_000)
    enabled: bool | None = None


class AlertRuleRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "id": "7e8f9a0b-1c2d-4e3f-9a4b-5c6d7e8f9a0b",
                "name": "Speeding",
                "type": "overspeed",
                "params": {"limit_kmh": None, "multiplier": 1.1, "min_duration_s": 30},
                "vehicle_ids": None,
                "enabled": True,
                "inactive_vehicle_ids": [],
                "applies_from": "2026-03-01T07:00:00Z",
                "created_at": "2026-03-01T07:00:00Z",
                "updated_at": "2026-03-01T07:00:00Z",
            }
        },
    )

    id: uuid.UUID
    name: str
    type: AlertType
    params: Measured
    vehicle_ids: list[uuid.UUID] | None
    enabled: bool
    inactive_vehicle_ids: list[uuid.UUID] = Field(
        default_factory=list,
        description="Covered vehicles the rule cannot fire for now: for an overspeed rule"
        " without `limit_kmh`, those with no speed limit of their own while the organization"
        " has no default (one removed after the rule was made); listed vehicles no longer in"
        " the organization.",
    )
    applies_from: datetime = Field(
        validation_alias=AliasChoices("applies_from", "created_at"),
        description="The rule applies to fixes from now on: it is checked against fixes"
        " processed from this moment (its creation). Positions already stored are not checked"
        " again, so a rule created after the data raises no alert for it (only a late fix,"
        " which makes the worker recompute the stretch it falls into, re-checks that stretch"
        " with the rules of the time).",
    )
    created_at: datetime
    updated_at: datetime
