from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, Index
from sqlmodel import Field, SQLModel

from milepost_common.domain.base import jsonb_field, tz_field


class Position(SQLModel, table=True):
    """One fix. Range-partitioned by ``fix_time``, daily; ``(device_id, fix_time)`` unique."""

    __tablename__ = "positions"
    __table_args__ = (
        Index("ix_positions_fix_time_brin", "fix_time", postgresql_using="brin"),
        # The worker reads a batch's own fixes (late ones included) without scanning devices.
        Index("ix_positions_batch_id", "batch_id"),
        {"postgresql_partition_by": "RANGE (fix_time)"},
    )

    device_id: uuid.UUID = Field(primary_key=True)
    fix_time: datetime = Field(sa_column=Column(DateTime(timezone=True), primary_key=True))
    org_id: uuid.UUID
    lat: float
    lon: float
    speed: float | None = None
    course: float | None = None
    altitude: float | None = None
    accuracy: float | None = None
    attributes: dict[str, Any] = jsonb_field()
    server_time: datetime = tz_field(nullable=False, default_now=True)
    batch_id: uuid.UUID | None = None
