from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, Index, String, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from milepost_common.domain.base import id_field, jsonb_field, tz_field


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    DEAD = "dead"


class WebhookEndpoint(SQLModel, table=True):
    """A customer's receiver; the signing secret is encrypted at rest (it is used again)."""

    __tablename__ = "webhook_endpoints"

    id: uuid.UUID = id_field()
    org_id: uuid.UUID = Field(foreign_key="organizations.id", index=True, ondelete="CASCADE")
    url: str = Field(max_length=2048)
    secret_encrypted: str
    event_types: list[str] = Field(
        default_factory=list, sa_column=Column(ARRAY(String(64)), nullable=False)
    )
    enabled: bool = True
    disabled_reason: str | None = Field(default=None, max_length=200)
    created_at: datetime = tz_field(nullable=False, default_now=True)
    updated_at: datetime = tz_field(nullable=False, default_now=True)


class WebhookDelivery(SQLModel, table=True):
    """One event for one endpoint; every attempt is appended to ``attempt_log``."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_deliveries_endpoint_event"),
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_webhook_deliveries_org_created", "org_id", "created_at"),
    )

    id: uuid.UUID = id_field()
    org_id: uuid.UUID = Field(foreign_key="organizations.id", ondelete="CASCADE")
    endpoint_id: uuid.UUID = Field(foreign_key="webhook_endpoints.id", ondelete="CASCADE")
    event_id: uuid.UUID
    event_type: str = Field(max_length=64)
    payload: dict[str, Any] = jsonb_field()
    status: DeliveryStatus = Field(default=DeliveryStatus.PENDING, sa_type=String(16))
    attempts: int = 0
    next_attempt_at: datetime | None = tz_field()
    last_response_code: int | None = None
    last_error: str | None = None
    attempt_log: list[dict[str, Any]] = jsonb_field(list)
    created_at: datetime = tz_field(nullable=False, default_now=True)
    delivered_at: datetime | None = tz_field()
