from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Index, String, text
from sqlmodel import Field, SQLModel

from milepost_common.domain.base import id_field, jsonb_field, tz_field


class BatchStatus(StrEnum):
    RECEIVED = "received"
    QUEUED = "queued"
    PROCESSING = "processing"
    PROCESSED = "processed"
    FAILED = "failed"


class BatchSource(StrEnum):
    JSON = "json"
    NDJSON = "ndjson"
    OSMAND = "osmand"


class IngestBatch(SQLModel, table=True):
    """One accepted push, written with its positions; the durable record of work to process."""

    __tablename__ = "ingest_batches"
    __table_args__ = (
        Index(
            "uq_ingest_batches_idempotency",
            "org_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
        Index("ix_ingest_batches_status_received", "status", "received_at"),
        Index("ix_ingest_batches_org_received", "org_id", "received_at"),
        # Retention's clearing of expired rejected items (only batches still keeping some).
        Index(
            "ix_ingest_batches_rejected_expiry",
            "rejected_items_expire_at",
            postgresql_where=text("rejected_items_expire_at IS NOT NULL"),
        ),
        Index(
            "ix_ingest_batches_lease",
            "lease_expires_at",
            postgresql_where=text("status = 'processing'"),
        ),
        # An API key's delete sets its batches' api_key_id to NULL: found without a scan.
        Index(
            "ix_ingest_batches_api_key_id",
            "api_key_id",
            postgresql_where=text("api_key_id IS NOT NULL"),
        ),
    )

    id: uuid.UUID = id_field()
    org_id: uuid.UUID = Field(foreign_key="organizations.id", ondelete="CASCADE")
    api_key_id: uuid.UUID | None = Field(
        default=None, foreign_key="api_keys.id", ondelete="SET NULL"
    )
    source: BatchSource = Field(sa_type=String(16))
    idempotency_key: str | None = Field(default=None, max_length=255)
    body_hash: str | None = Field(default=None, max_length=64)
    status: BatchStatus = Field(default=BatchStatus.RECEIVED, sa_type=String(16))
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    errors: list[dict[str, Any]] = jsonb_field(list)
    rejected_items: list[dict[str, Any]] = jsonb_field(list)
    rejected_items_expire_at: datetime | None = tz_field()
    response: dict[str, Any] = jsonb_field()
    device_ids: list[str] = jsonb_field(list)
    received_at: datetime = tz_field(nullable=False, default_now=True)
    queued_at: datetime | None = tz_field()
    processing_started_at: datetime | None = tz_field()
    processed_at: datetime | None = tz_field()
    # Who is processing the batch and until when; renewed while alive, re-queued once expired.
    lease_holder: str | None = Field(default=None, max_length=128)
    lease_expires_at: datetime | None = tz_field()
    attempts: int = 0
    last_error: str | None = None
