"""Read models and filters of the audit log."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from milepost_common.pagination import DEFAULT_LIMIT, MAX_LIMIT


class AuditEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    occurred_at: datetime
    actor_id: uuid.UUID | None
    actor_type: str
    actor_label: str | None
    org_id: uuid.UUID | None
    action: str = Field(examples=["api_keys.revoke"])
    target_type: str | None
    target_id: str | None
    diff: dict[str, Any]
    ip: str | None
    request_id: str | None


class AuditSort(StrEnum):
    OCCURRED_AT = "occurred_at"
    OCCURRED_AT_DESC = "-occurred_at"


class AuditFilters(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    actor_id: uuid.UUID | None = None
    actor: str | None = Field(None, max_length=320, description="Part of the actor's label.")
    org_id: uuid.UUID | None = None
    org_name: str | None = Field(
        None, max_length=200, description="Part of the organization's name (case-insensitive)."
    )
    action: str | None = Field(
        None,
        max_length=64,
        description="An action (`api_keys.revoke`) or a feature prefix (`api_keys.`).",
    )
    target_type: str | None = Field(None, max_length=64)
    target_id: str | None = Field(None, max_length=128)
    from_: datetime | None = Field(None, alias="from", description="occurred_at ≥ this.")
    to: datetime | None = Field(None, description="occurred_at < this.")
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = None
    sort: AuditSort = AuditSort.OCCURRED_AT
