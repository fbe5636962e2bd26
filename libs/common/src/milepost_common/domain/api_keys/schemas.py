"""Request and response models of API keys (the table is ``models.ApiKey``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from milepost_common.domain.api_keys.models import Scope
from milepost_common.pagination import DEFAULT_LIMIT, MAX_LIMIT


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, examples=["Gateway EU-1"])
    scopes: list[Scope] | None = Field(None, min_length=1, description="Default: `ingest`.")
    expires_at: AwareDatetime | None = None  # with an offset, as every timestamp accepted


class ApiKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    org_id: uuid.UUID
    name: str
    prefix: str = Field(description="The key's first characters: how to recognise it.")
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The secret: shown in this answer only, never again.")


class ApiKeyStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


class ApiKeySort(StrEnum):
    CREATED_AT = "created_at"
    CREATED_AT_DESC = "-created_at"
    NAME = "name"
    NAME_DESC = "-name"
    LAST_USED_AT = "last_used_at"
    LAST_USED_AT_DESC = "-last_used_at"


class ApiKeyFilters(BaseModel):
    org_id: uuid.UUID | None = None
    org_name: str | None = Field(
        None, max_length=200, description="Part of the organization's name (case-insensitive)."
    )
    q: str | None = Field(None, max_length=200, description="Part of the name or prefix.")
    status: ApiKeyStatus | None = None
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = None
    sort: ApiKeySort = ApiKeySort.CREATED_AT
