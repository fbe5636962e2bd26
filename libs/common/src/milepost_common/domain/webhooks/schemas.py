"""Webhook endpoint and delivery DTOs: the public API's, then the operators' views of
deliveries (``Delivery*``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

from milepost_common.domain.webhooks.models import DeliveryStatus
from milepost_common.pagination import DEFAULT_LIMIT, MAX_LIMIT


class WebhookEventType(StrEnum):
    """What an endpoint can subscribe to; the payload's ``type`` (``events.py`` builds them)."""

    ALERT_CREATED = "alert.created"
    ALERT_ENDED = "alert.ended"
    TRIP_STARTED = "trip.started"
    TRIP_ENDED = "trip.ended"
    STOP_STARTED = "stop.started"
    DEVICE_OFFLINE = "device.offline"
    DEVICE_ONLINE = "device.online"


PING_EVENT_TYPE = "ping"

_ENDPOINT_EXAMPLE: dict[str, Any] = {
    "id": "2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d",
    "url": "https://hooks.example.com/milepost",
    "event_types": ["alert.created"],
    "enabled": True,
    "disabled_reason": None,
    "created_at": "2026-03-01T07:00:00Z",
    "updated_at": "2026-03-01T07:00:00Z",
}


def _http_url(url: HttpUrl) -> HttpUrl:
    if len(str(url)) > 2048:
        raise ValueError("at most 2048 characters")
    if url.username or url.password:
        raise ValueError("credentials in the URL are not allowed")
    if url.port == 0:
        raise ValueError("port 0 is not a port a receiver can listen on")
    return url


class WebhookCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "url": "https://hooks.example.com/milepost",
                "event_types": ["alert.created"],
            }
        },
    )

    url: HttpUrl = Field(description="Receives a signed POST per event (http or https).")
    event_types: list[WebhookEventType] = Field(min_length=1, max_length=16)

    _url = field_validator("url")(_http_url)


class WebhookUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrl | None = None
    event_types: list[WebhookEventType] | None = Field(None, min_length=1, max_length=16)
    enabled: bool | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: HttpUrl | None) -> HttpUrl | None:
        return None if url is None else _http_url(url)


class WebhookRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"example": _ENDPOINT_EXAMPLE}
    )

    id: uuid.UUID
    url: str
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


class WebhookWithSecret(WebhookRead):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={"example": {**_ENDPOINT_EXAMPLE, "secret": "mpwh_6yQ1…"}},
    )

    secret: str = Field(
        description="Signing secret for `Milepost-Signature`; shown only in this answer."
    )


class WebhookPingResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "event_id": "8b9c0d1e-2f3a-4b5c-9d6e-7f8a9b0c1d2e",
                "delivered": True,
                "status_code": 200,
                "error": None,
                "duration_ms": 84.2,
            }
        }
    )

    event_id: uuid.UUID
    delivered: bool = Field(description="True when the receiver answered 2xx.")
    status_code: int | None
    error: str | None
    duration_ms: float


class WebhookDeliveryRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "id": "4c5d6e7f-8a9b-4c0d-9e1f-2a3b4c5d6e7f",
                "event_id": "8b9c0d1e-2f3a-4b5c-9d6e-7f8a9b0c1d2e",
                "event_type": "alert.created",
                "status": "succeeded",
                "attempts": 1,
                "last_response_code": 200,
                "last_error": None,
                "next_attempt_at": None,
                "created_at": "2026-03-01T07:20:01Z",
                "delivered_at": "2026-03-01T07:20:01Z",
            }
        },
    )

    id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    status: DeliveryStatus
    attempts: int
    last_response_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None


class DeliveryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    org_id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_response_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class DeliveryDetail(DeliveryRead):
    payload: dict[str, Any]
    attempt_log: list[dict[str, Any]]


class DeliveryRetried(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    status: DeliveryStatus


class DeliverySort(StrEnum):
    CREATED_AT = "created_at"
    CREATED_AT_DESC = "-created_at"


class DeliveryFilters(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    org_id: uuid.UUID | None = None
    org_name: str | None = Field(
        None, max_length=200, description="Part of the organization's name (case-insensitive)."
    )
    endpoint_id: uuid.UUID | None = None
    status: DeliveryStatus | None = None
    event_type: str | None = Field(None, max_length=64)
    from_: datetime | None = Field(None, alias="from", description="created_at ≥ this.")
    to: datetime | None = Field(None, description="created_at < this.")
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = None
    sort: DeliverySort = DeliverySort.CREATED_AT
