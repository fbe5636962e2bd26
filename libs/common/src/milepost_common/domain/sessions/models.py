"""Tables of logins: refresh tokens and one-time tokens (invitations, password resets), each
belonging to a ``users`` row."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import String
from sqlmodel import Field, SQLModel

from milepost_common.domain.base import id_field, tz_field


class TokenPurpose(StrEnum):
    INVITATION = "invitation"
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a purpose name


class RefreshToken(SQLModel, table=True):
    """Opaque, stored as a hash, rotated on every use; reuse of a rotated one revokes the family."""

    __tablename__ = "refresh_tokens"

    id: uuid.UUID = id_field()
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    family_id: uuid.UUID = Field(index=True)
    token_hash: str = Field(unique=True, max_length=128)
    created_at: datetime = tz_field(nullable=False, default_now=True)
    expires_at: datetime = tz_field(nullable=False)
    rotated_at: datetime | None = tz_field()
    revoked_at: datetime | None = tz_field()


class OneTimeToken(SQLModel, table=True):
    """Invitation and password-reset links: hashed, single use, 48 h."""

    __tablename__ = "one_time_tokens"

    id: uuid.UUID = id_field()
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    purpose: TokenPurpose = Field(sa_type=String(32))
    token_hash: str = Field(unique=True, max_length=128)
    created_at: datetime = tz_field(nullable=False, default_now=True)
    expires_at: datetime = tz_field(nullable=False)
    used_at: datetime | None = tz_field()
