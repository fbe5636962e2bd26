from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from milepost_common.domain.base import id_field, jsonb_field, tz_field

# What a replay writes of a trip or a stop beyond its key ``(device_id, start_time)``, in
# the tables' order: the row made of a span, what an upsert sets, and what tells a changed
# row from an unchanged one.
TRIP_FIELDS = (
    "end_time",
    "start_lat",
    "start_lon",
    "end_lat",
    "end_lon",
    "distance_m",
    "duration_s",
    "avg_speed",
    "max_speed",
)
STOP_FIELDS = ("end_time", "lat", "lon", "duration_s")


class Trip(SQLModel, table=True):
    """A drive between two stops, materialized by the worker; ``end_time`` null while open."""

    __tablename__ = "trips"
    __table_args__ = (
        UniqueConstraint("device_id", "start_time", name="uq_trips_device_start"),
        Index("ix_trips_org_start", "org_id", "start_time"),
    )

    id: uuid.UUID = id_field()
    org_id: uuid.UUID = Field(foreign_key="organizations.id", ondelete="CASCADE")
    device_id: uuid.UUID = Field(foreign_key="devices.id", ondelete="CASCADE")
    start_time: datetime = tz_field(nullable=False)
    end_time: datetime | None = tz_field()
    start_lat: float
    start_lon: float
    end_lat: float
    end_lon: float
    distance_m: float = 0.0
    duration_s: float = 0.0
    avg_speed: float = 0.0
    max_speed: float = 0.0


class Stop(SQLModel, table=True):
    """Where a vehicle rested between trips; its position is its first fix."""

    __tablename__ = "stops"
    __table_args__ = (
        UniqueConstraint("device_id", "start_time", name="uq_stops_device_start"),
        Index("ix_stops_org_start", "org_id", "start_time"),
    )

    id: uuid.UUID = id_field()
    org_id: uuid.UUID = Field(foreign_key="organizations.id", ondelete="CASCADE")
    device_id: uuid.UUID = Field(foreign_key="devices.id", ondelete="CASCADE")
    start_time: datetime = tz_field(nullable=False)
    end_time: datetime | None = tz_field()
    lat: float
    lon: float
    duration_s: float = 0.0


class MotionCheckpoint(SQLModel, table=True):
    """The worker's state right after a stop settled: where a late fix's recomputation starts.

    ``state`` holds the trip/stop machine and the alert rules' states (worker-defined JSON).
    """

    __tablename__ = "motion_checkpoints"

    device_id: uuid.UUID = Field(foreign_key="devices.id", primary_key=True, ondelete="CASCADE")
    anchor_time: datetime = Field(sa_column=Column(DateTime(timezone=True), primary_key=True))
    org_id: uuid.UUID = Field(foreign_key="organizations.id", ondelete="CASCADE", index=True)
    state: dict[str, Any] = jsonb_field()
