from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, Index, String, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from milepost_common.domain.base import id_field, tz_field


class Scope(StrEnum):
    INGEST = "ingest"
    INGEST_OSMAND = "ingest:osmand"


class ApiKey(SQLModel, table=True):
    """An upstream system's key: shown once, stored as a hash, found by its prefix."""

    __tablename__ = "api_keys"
    __table_args__ = (
        # A user's delete sets the keys they created to NULL: found without a scan.
        Index(
            "ix_api_keys_created_by_id",
            "created_by_id",
            postgresql_where=text("created_by_id IS NOT NULL"),
        ),
    )

    id: uuid.UUID = id_field()
    org_id: uuid.UUID = Field(foreign_key="organizations.id", index=True, ondelete="CASCADE")
    name: str = Field(max_length=200)
    prefix: str = Field(unique=True, max_length=32)
    key_hash: str = Field(max_length=128)
    scopes: list[str] = Field(
        default_factory=lambda: [Scope.INGEST.value],
        sa_column=Column(ARRAY(String(32)), nullable=False),
    )
    created_by_id: uuid.UUID | None = Field(
        default=None, foreign_key="users.id", ondelete="SET NULL"
    )
    created_at: datetime = tz_field(nullable=False, default_now=True)
    expires_at: datetime | None = tz_field()
    revoked_at: datetime | None = tz_field()
    last_used_at: datetime | None = tz_field()
