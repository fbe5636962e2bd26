"""Alerts and their types (the rules that raise them are ``alert_rules/models.py``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Index, String, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from milepost_common.domain.base import id_field, jsonb_field, tz_field


class AlertType(StrEnum):
    OVERSPEED = "overspeed"
    GEOFENCE_ENTER = "geofence_enter"
    GEOFENCE_EXIT = "geofence_exit"
    IDLE = "idle"
    OFFLINE = "offline"
    LOW_BATTERY = "low_battery"


class Alert(SQLModel, table=True):
    """One occurrence of a rule for a device; unique per (rule, device, occurred_at)."""

    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("rule_id", "device_id", "occurred_at", name="uq_alerts_rule_device_time"),
        Index("ix_alerts_org_occurred", "org_id", "occurred_at"),
        Index("ix_alerts_device_occurred", "device_id", "occurred_at"),
        # A user's delete sets their acknowledgements to NULL: found without a scan.
        Index(
            "ix_alerts_acknowledged_by",
            "acknowledged_by",
            postgresql_where=text("acknowledged_by IS NOT NULL"),
        ),
    )

    id: uuid.UUID = id_field()
    org_id: uuid.UUID = Field(foreign_key="organizations.id", ondelete="CASCADE")
    device_id: uuid.UUID = Field(foreign_key="devices.id", ondelete="CASCADE")
    rule_id: uuid.UUID = Field(foreign_key="alert_rules.id", ondelete="CASCADE")
    type: AlertType = Field(sa_type=String(32))
    occurred_at: datetime = tz_field(nullable=False)
    lat: float | None = None
    lon: float | None = None
    details: dict[str, Any] = jsonb_field()
    acknowledged_at: datetime | None = tz_field()
    acknowledged_by: uuid.UUID | None = Field(
        default=None, foreign_key="users.id", ondelete="SET NULL"
    )
    created_at: datetime = tz_field(nullable=False, default_now=True)
