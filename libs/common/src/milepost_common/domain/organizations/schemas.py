"""Request and response models of organizations (the table is ``models.Organization``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from limits import parse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from milepost_common.pagination import DEFAULT_LIMIT, MAX_LIMIT
from milepost_common.units import Kmh, Metres


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("not an IANA time zone") from None
    return value


def _rate(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parse(value)
    except ValueError:
        raise ValueError("not a rate like '600/minute'") from None
    return value


TimeZone = Annotated[
    str, Field(max_length=64, examples=["Europe/Berlin"]), AfterValidator(_timezone)
]
Rate = Annotated[str | None, Field(max_length=64, examples=["600/minute"]), AfterValidator(_rate)]
Name = Annotated[str, Field(min_length=1, max_length=200, examples=["Acme Logistics"])]


class OrganizationSettings(BaseModel):
    """Settings an operator may change; omitted fields keep their value."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    timezone: TimeZone | None = None
    retention_days: int | None = Field(None, ge=1, le=3650)
    default_speed_limit_kmh: float | None = Field(None, gt=0, le=400)
    trip_min_distance_m: float | None = Field(None, gt=0, le=100_000)
    trip_min_duration_s: int | None = Field(None, gt=0, le=86_400)
    trip_stop_gap_s: int | None = Field(None, gt=0, le=7 * 86_400)
    max_devices: int | None = Field(None, ge=0)
    ingest_rate_limit: Rate = None
    api_rate_limit: Rate = None
    max_speed_kmh: float | None = Field(
        None,
        gt=0,
        le=2000,
        description="Faster is implausible (400 by default): ingest rejects a fix reporting a"
        " faster speed, and trips, stops and alerts leave out a fix reached faster from the"
        " one before (a GPS outlier) unless the next fix agrees with it.",
    )
    max_clock_skew_s: int | None = Field(None, ge=0, le=86_400)


# Settings whose value may be cleared with an explicit null; the others keep a default.
NULLABLE_SETTINGS = frozenset(
    {"default_speed_limit_kmh", "max_devices", "ingest_rate_limit", "api_rate_limit"}
)


class OrganizationCreate(OrganizationSettings):
    name: Name


class OrganizationUpdate(OrganizationSettings):
    pass


class OrganizationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    timezone: str
    retention_days: int
    default_speed_limit_kmh: Kmh | None
    trip_min_distance_m: Metres
    trip_min_duration_s: int
    trip_stop_gap_s: int
    max_devices: int | None
    ingest_rate_limit: str | None
    api_rate_limit: str | None
    max_speed_kmh: Kmh
    max_clock_skew_s: int
    suspended: bool
    suspended_at: datetime | None
    created_at: datetime
    updated_at: datetime


class OrganizationSort(StrEnum):
    CREATED_AT = "created_at"
    CREATED_AT_DESC = "-created_at"
    NAME = "name"
    NAME_DESC = "-name"


class OrganizationFilters(BaseModel):
    q: str | None = Field(None, max_length=200, description="Part of the name.")
    suspended: bool | None = None
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = None
    sort: OrganizationSort = OrganizationSort.CREATED_AT


class OrganizationDelete(BaseModel):
    confirm: str = Field(description="The organization's exact name.")


class ExportFormat(StrEnum):
    NDJSON = "ndjson"
    CSV = "csv"


class ExportKind(StrEnum):
    ORGANIZATION = "organization"
    USERS = "users"
    DEVICES = "devices"
    API_KEYS = "api_keys"
    GEOFENCES = "geofences"
    ALERT_RULES = "alert_rules"
    WEBHOOK_ENDPOINTS = "webhook_endpoints"
    INGEST_BATCHES = "ingest_batches"
    POSITIONS = "positions"
    TRIPS = "trips"
    STOPS = "stops"
    ALERTS = "alerts"
    WEBHOOK_DELIVERIES = "webhook_deliveries"
