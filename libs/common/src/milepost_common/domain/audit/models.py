from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from milepost_common.domain.base import id_field, jsonb_field, tz_field

# An actor's label: an email at most, or what a failed login was attempted with, cut to fit.
LABEL_MAX = 320


class AuditEntry(SQLModel, table=True):
    """Append-only (a trigger refuses UPDATE, DELETE and TRUNCATE). No foreign keys: the
    record outlives what it describes, deleted organizations included."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_occurred", "occurred_at", "id"),
        Index("ix_audit_log_org_occurred", "org_id", "occurred_at"),
        Index("ix_audit_log_actor_occurred", "actor_id", "occurred_at"),
        Index("ix_audit_log_action", "action"),
    )

    id: uuid.UUID = id_field()
    occurred_at: datetime = tz_field(nullable=False, default_now=True)
    actor_id: uuid.UUID | None = None
    actor_type: str = Field(max_length=16)
    actor_label: str | None = Field(default=None, max_length=LABEL_MAX)
    org_id: uuid.UUID | None = None
    action: str = Field(max_length=64)
    target_type: str | None = Field(default=None, max_length=64)
    target_id: str | None = Field(default=None, max_length=128)
    diff: dict[str, Any] = jsonb_field()
    ip: str | None = Field(default=None, max_length=64)
    request_id: str | None = Field(default=None, max_length=128)
