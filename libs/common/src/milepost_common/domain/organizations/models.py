from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel

from milepost_common.domain.base import id_field, tz_field


class Organization(SQLModel, table=True):
    """A tenant and its settings (time zone, retention, trip parameters, limits, filters)."""

    __tablename__ = "organizations"

    id: uuid.UUID = id_field()
    name: str = Field(max_length=200)
    timezone: str = Field(default="UTC", max_length=64)
    retention_days: int = Field(default=365, ge=1)
    default_speed_limit_kmh: float | None = None
    trip_min_distance_m: float = Field(default=200.0, gt=0)
    trip_min_duration_s: int = Field(default=180, gt=0)
    trip_stop_gap_s: int = Field(default=3600, gt=0)
    max_devices: int | None = None
    ingest_rate_limit: str | None = Field(default=None, max_length=64)
    api_rate_limit: str | None = Field(default=None, max_length=64)
    max_speed_kmh: float = Field(default=400.0, gt=0, description="Faster fixes are implausible.")
    max_clock_skew_s: int = Field(default=300, ge=0, description="Tolerated fix time in future.")
    suspended_at: datetime | None = tz_field()
    # Positions of this organization older than this are deleted already (the retention job
    # reads only the days after it; it stays a margin behind); cleared when retention_days
    # changes.
    retention_applied_until: datetime | None = tz_field()
    created_at: datetime = tz_field(nullable=False, default_now=True)
    updated_at: datetime = tz_field(nullable=False, default_now=True)

    @property
    def suspended(self) -> bool:
        return self.suspended_at is not None
