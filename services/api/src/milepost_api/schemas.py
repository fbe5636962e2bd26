"""Request and response bodies that exist only at the api's door (auth, self-service).

Resource DTOs live with their feature in ``milepost_common.domain``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field

from milepost_common.domain.api_keys.models import Scope
from milepost_common.domain.users.models import OrgRole
from milepost_common.domain.users.schemas import Password


class TokenPairRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "access_token": "eyJhbGciOiJIUzI1NiIsImtpZCI6Ii4uLiJ9.eyJzdWIiOiIuLi4ifQ.sig",
                "refresh_token": "mprt_Qm9vZm9vYmFy…",
                "token_type": "bearer",
                "expires_in": 900,
            }
        }
    )

    access_token: str
    refresh_token: str = Field(description="Single use: each refresh returns a new one.")
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_in: int = Field(description="Seconds until the access token expires.")


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=512)


class RedeemRequest(BaseModel):
    """A one-time token from an invitation or password-reset link, and the new password."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=512)
    password: Password


class MeRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    org_id: uuid.UUID
    email: str
    name: str | None
    role: OrgRole
    created_at: datetime
    last_login_at: datetime | None


class MeUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=128)
    new_password: Password


class TeamMemberRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    name: str | None
    role: OrgRole
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None


class Invitation(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"example": {"email": "dispatch@example.com", "role": "viewer"}},
    )

    email: EmailStr
    role: OrgRole
    name: str | None = Field(None, max_length=200)


class InvitedMember(TeamMemberRead):
    invite_url: str = Field(description="One-time link (48 hours); shown only in this answer.")


class RoleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: OrgRole


class ResetLink(BaseModel):
    reset_url: str = Field(description="One-time link (48 hours); shown only in this answer.")


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"name": "Gateway EU", "scopes": ["ingest"]}}
    )

    name: str = Field(min_length=1, max_length=200)
    scopes: list[Scope] = Field(default_factory=lambda: [Scope.INGEST], min_length=1)
    expires_at: AwareDatetime | None = None


class ApiKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    prefix: str = Field(description="The key's first characters, to recognize it.")
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyIssued(ApiKeyRead):
    key: str = Field(description="The secret: shown only in this answer, stored as a hash.")
