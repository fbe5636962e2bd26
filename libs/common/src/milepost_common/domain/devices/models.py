from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Index, String
from sqlmodel import Field, SQLModel

from milepost_common.domain.base import id_field, jsonb_field, tz_field


class MotionState(StrEnum):
    STOPPED = "stopped"
    MOVING = "moving"


class Device(SQLModel, table=True):
    """A tracked vehicle (the public API calls it a vehicle); ``unique_id`` is the tracker's."""

    __tablename__ = "devices"
    __table_args__ = (Index("ix_devices_org_name", "org_id", "name"),)

    id: uuid.UUID = id_field()
    org_id: uuid.UUID = Field(foreign_key="organizations.id", index=True, ondelete="CASCADE")
    unique_id: str = Field(unique=True, max_length=128)
    name: str = Field(max_length=200)
    plate: str | None = Field(default=None, max_length=32)
    speed_limit_kmh: float | None = None
    disabled: bool = False
    trip_min_distance_m: float | None = None
    trip_min_duration_s: int | None = None
    trip_stop_gap_s: int | None = None
    # Start of the current organization's tenure (set by a transfer); None: since registration.
    assigned_at: datetime | None = tz_field()
    created_at: datetime = tz_field(nullable=False, default_now=True)
    updated_at: datetime = tz_field(nullable=False, default_now=True)


class DeviceState(SQLModel, table=True):
    """What the worker needs to continue a device's timeline, and its latest position."""

    __tablename__ = "device_state"

    device_id: uuid.UUID = Field(foreign_key="devices.id", primary_key=True, ondelete="CASCADE")
    org_id: uuid.UUID = Field(index=True)
    last_fix_time: datetime | None = tz_field()
    last_lat: float | None = None
    last_lon: float | None = None
    last_speed: float | None = None
    last_course: float | None = None
    last_altitude: float | None = None
    last_accuracy: float | None = None
    last_attributes: dict[str, Any] = jsonb_field()
    motion: MotionState = Field(default=MotionState.STOPPED, sa_type=String(16))
    watermark: datetime | None = tz_field()
    machine: dict[str, Any] = jsonb_field()
    offline_alerted_at: datetime | None = tz_field()
    # Set by the offline detection (device.offline) to the last fix before the silence;
    # cleared by the first recent fix after it (device.online).
    offline_since: datetime | None = tz_field()
    updated_at: datetime = tz_field(nullable=False, default_now=True)
