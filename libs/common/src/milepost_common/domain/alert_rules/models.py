"""Alert rules: what an organization watches for (their alerts are ``alerts/models.py``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, String
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlmodel import Field, SQLModel

from milepost_common.domain.alerts.models import AlertType
from milepost_common.domain.base import id_field, jsonb_field, tz_field


class AlertRule(SQLModel, table=True):
    __tablename__ = "alert_rules"

    id: uuid.UUID = id_field()
    org_id: uuid.UUID = Field(foreign_key="organizations.id", index=True, ondelete="CASCADE")
    name: str = Field(max_length=200)
    type: AlertType = Field(sa_type=String(32))
    params: dict[str, Any] = jsonb_field()
    vehicle_ids: list[uuid.UUID] | None = Field(
        default=None, sa_column=Column(ARRAY(UUID(as_uuid=True)), nullable=True)
    )
    enabled: bool = True
    created_at: datetime = tz_field(nullable=False, default_now=True)
    updated_at: datetime = tz_field(nullable=False, default_now=True)
