"""Request and response models of platform operators (``users`` rows with a platform role
and no organization)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import AliasChoices, BaseModel, ConfigDict, EmailStr, Field

from milepost_common.domain.users.models import PlatformRole
from milepost_common.domain.users.schemas import Password, UserListSort
from milepost_common.pagination import DEFAULT_LIMIT, MAX_LIMIT


class OperatorCreate(BaseModel):
    """Without a password, the answer carries a one-time invitation link (48 h)."""

    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    password: Password | None = None
    role: PlatformRole
    name: str | None = Field(None, max_length=200)


class OperatorUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: PlatformRole


class OperatorRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    name: str | None
    role: PlatformRole = Field(validation_alias=AliasChoices("platform_role", "role"))
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None


class OperatorCreated(OperatorRead):
    invite_url: str | None = None


class OperatorFilters(BaseModel):
    q: str | None = Field(None, max_length=320)
    role: PlatformRole | None = None
    is_active: bool | None = None
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = None
    sort: UserListSort = UserListSort.CREATED_AT
