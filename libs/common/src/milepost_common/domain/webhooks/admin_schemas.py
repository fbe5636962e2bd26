"""Operator-side views of webhook deliveries."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from milepost_common.domain.webhooks.models import DeliveryStatus
from milepost_common.pagination import DEFAULT_LIMIT, MAX_LIMIT


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
