"""Request and response models of organization members (the table is ``models.User``;
operators' are in ``domain/operators/schemas.py``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from milepost_common.domain.users.models import OrgRole
from milepost_common.pagination import DEFAULT_LIMIT, MAX_LIMIT

MIN_PASSWORD_LENGTH = 12
Password = Annotated[
    str, Field(min_length=MIN_PASSWORD_LENGTH, max_length=128, examples=["a long passphrase"])
]


class UserCreate(BaseModel):
    """Without a password, the answer carries a one-time invitation link (48 h)."""

    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    password: Password | None = None
    role: OrgRole
    name: str | None = Field(None, max_length=200)


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: OrgRole


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    org_id: uuid.UUID | None
    email: str
    name: str | None
    role: OrgRole | None
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None


class UserCreated(UserRead):
    invite_url: str | None = Field(
        None, description="One-time invitation link (48 h); only when no password was given."
    )


class PasswordResetLink(BaseModel):
    reset_url: str = Field(description="One-time link; valid 48 hours, shown only here.")
    expires_at: datetime


# The public API's team list (its OpenAPI enum); operators' lists sort by more (below).
class UserSort(StrEnum):
    CREATED_AT = "created_at"
    CREATED_AT_DESC = "-created_at"


class UserListSort(StrEnum):
    """Operators' lists of users: also by email and last login (never logged in last)."""

    CREATED_AT = "created_at"
    CREATED_AT_DESC = "-created_at"
    EMAIL = "email"
    EMAIL_DESC = "-email"
    LAST_LOGIN_AT = "last_login_at"
    LAST_LOGIN_AT_DESC = "-last_login_at"


class UserFilters(BaseModel):
    org_id: uuid.UUID | None = None
    org_name: str | None = Field(
        None, max_length=200, description="Part of the organization's name (case-insensitive)."
    )
    q: str | None = Field(None, max_length=320, description="Part of the email or name.")
    role: OrgRole | None = None
    is_active: bool | None = None
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = None
    sort: UserListSort = UserListSort.CREATED_AT
