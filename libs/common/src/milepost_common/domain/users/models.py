from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, Index, String, text
from sqlmodel import Field, SQLModel

from milepost_common.domain.base import id_field, tz_field


class OrgRole(StrEnum):
    VIEWER = "viewer"
    MANAGER = "manager"
    OWNER = "owner"

    @property
    def rank(self) -> int:
        return _ORG_RANK[self]


class PlatformRole(StrEnum):
    SUPPORT = "support"
    OPERATOR = "operator"
    SUPERADMIN = "superadmin"

    @property
    def rank(self) -> int:
        return _PLATFORM_RANK[self]


_ORG_RANK = {OrgRole.VIEWER: 1, OrgRole.MANAGER: 2, OrgRole.OWNER: 3}
_PLATFORM_RANK = {PlatformRole.SUPPORT: 1, PlatformRole.OPERATOR: 2, PlatformRole.SUPERADMIN: 3}


class User(SQLModel, table=True):
    """An organization member (org role) or a platform operator (platform role, no org)."""

    __tablename__ = "users"
    __table_args__ = (
        Index("uq_users_email_lower", text("lower(email)"), unique=True),
        CheckConstraint(
            "(org_id IS NOT NULL AND role IS NOT NULL AND platform_role IS NULL)"
            " OR (org_id IS NULL AND role IS NULL AND platform_role IS NOT NULL)",
            name="ck_users_member_or_operator",
        ),
        Index(
            "uq_users_sso_identity",
            "sso_issuer",
            "sso_subject",
            unique=True,
            postgresql_where=text("sso_subject IS NOT NULL"),
        ),
    )

    id: uuid.UUID = id_field()
    org_id: uuid.UUID | None = Field(
        default=None, foreign_key="organizations.id", index=True, ondelete="CASCADE"
    )
    email: str = Field(max_length=320)
    name: str | None = Field(default=None, max_length=200)
    password_hash: str | None = None
    role: OrgRole | None = Field(default=None, sa_type=String(16))
    platform_role: PlatformRole | None = Field(default=None, sa_type=String(16))
    is_active: bool = True
    created_at: datetime = tz_field(nullable=False, default_now=True)
    updated_at: datetime = tz_field(nullable=False, default_now=True)
    last_login_at: datetime | None = tz_field()
    password_changed_at: datetime | None = tz_field()
    # Sessions begun before this are over (a console session is refused at its next request).
    sessions_ended_at: datetime | None = tz_field()
    # An operator's SSO identity, bound on the first SSO login (the provider's iss and sub).
    sso_issuer: str | None = Field(default=None, max_length=512)
    sso_subject: str | None = Field(default=None, max_length=255)
