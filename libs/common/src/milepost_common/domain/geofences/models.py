from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlmodel import Field, SQLModel

from milepost_common.domain.base import id_field, jsonb_field, tz_field


class Geofence(SQLModel, table=True):
    """A circle (GeoJSON Point + ``radius_m``) or a polygon (GeoJSON Polygon, [lon, lat])."""

    __tablename__ = "geofences"

    id: uuid.UUID = id_field()
    org_id: uuid.UUID = Field(foreign_key="organizations.id", index=True, ondelete="CASCADE")
    name: str = Field(max_length=200)
    geometry: dict[str, Any] = jsonb_field()
    radius_m: float | None = None
    created_at: datetime = tz_field(nullable=False, default_now=True)
    updated_at: datetime = tz_field(nullable=False, default_now=True)
