"""API keys of organizations: issue (the secret shown once), list, revoke, rotate."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from milepost_admin.deps import AUTH_ERRORS, ContextDep, OperatorUser, SupportUser
from milepost_common.domain.api_keys import service as api_key_service
from milepost_common.domain.api_keys.models import ApiKey
from milepost_common.domain.api_keys.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyFilters,
    ApiKeyRead,
)
from milepost_common.domain.organizations import service as org_service
from milepost_common.domain.organizations.errors import OrganizationNotFound
from milepost_common.errors import Conflict, NotFound, ValidationFailed
from milepost_common.pagination import Page
from milepost_common.web.deps import SessionDep
from milepost_common.web.errors import error_responses

router = APIRouter(prefix="/v1", tags=["api-keys"])


async def load_api_key(key_id: uuid.UUID, session: SessionDep) -> ApiKey:
    return await api_key_service.get_api_key(session, key_id)


ApiKeyDep = Annotated[ApiKey, Depends(load_api_key)]


def created(issued: api_key_service.IssuedKey) -> ApiKeyCreated:
    return ApiKeyCreated.model_validate(
        {**ApiKeyRead.model_validate(issued.api_key).model_dump(), "key": issued.secret}
    )


@router.post(
    "/organizations/{org_id}/api-keys",
    status_code=201,
    summary="Issue an API key (the secret is shown in this answer only)",
    responses=error_responses(*AUTH_ERRORS, OrganizationNotFound, ValidationFailed),
)
async def issue_api_key(
    user: OperatorUser,
    org_id: uuid.UUID,
    body: ApiKeyCreate,
    session: SessionDep,
    ctx: ContextDep,
) -> ApiKeyCreated:
    org = await org_service.get_organization(session, org_id)
    issued = await api_key_service.issue_api_key(
        session,
        user,
        org.id,
        body.name,
        scopes=body.scopes,
        expires_at=body.expires_at,
        pepper=ctx.settings.auth.api_key_pepper.get_secret_value(),
    )
    return created(issued)


@router.get(
    "/organizations/{org_id}/api-keys",
    summary="List an organization's API keys (prefix and last use, never the secret)",
    responses=error_responses(*AUTH_ERRORS, OrganizationNotFound),
)
async def list_api_keys(
    _user: SupportUser,
    org_id: uuid.UUID,
    filters: Annotated[ApiKeyFilters, Query()],
    session: SessionDep,
) -> Page[ApiKeyRead]:
    org = await org_service.get_organization(session, org_id)
    page = await api_key_service.list_api_keys_page(
        session, filters.model_copy(update={"org_id": org.id})
    )
    return Page(
        items=[ApiKeyRead.model_validate(k) for k in page.items], next_cursor=page.next_cursor
    )


@router.get(
    "/api-keys",
    summary="Search API keys of every organization",
    responses=error_responses(*AUTH_ERRORS),
)
async def list_all_api_keys(
    _user: SupportUser, filters: Annotated[ApiKeyFilters, Query()], session: SessionDep
) -> Page[ApiKeyRead]:
    page = await api_key_service.list_api_keys_page(session, filters)
    return Page(
        items=[ApiKeyRead.model_validate(k) for k in page.items], next_cursor=page.next_cursor
    )


@router.get(
    "/api-keys/{key_id}",
    summary="Read an API key",
    responses=error_responses(*AUTH_ERRORS, NotFound),
)
async def get_api_key(_user: SupportUser, api_key: ApiKeyDep) -> ApiKeyRead:
    return ApiKeyRead.model_validate(api_key)


@router.post(
    "/api-keys/{key_id}/revoke",
    summary="Revoke an API key (idempotent; ingest refuses it within a few seconds)",
    responses=error_responses(*AUTH_ERRORS, NotFound),
)
async def revoke_api_key(user: OperatorUser, api_key: ApiKeyDep, session: SessionDep) -> ApiKeyRead:
    return ApiKeyRead.model_validate(await api_key_service.revoke_api_key(session, user, api_key))


@router.post(
    "/api-keys/{key_id}/rotate",
    status_code=201,
    summary="Rotate an API key: a new secret (shown once), the old key revoked",
    responses=error_responses(*AUTH_ERRORS, NotFound, Conflict),
)
async def rotate_api_key(
    user: OperatorUser, api_key: ApiKeyDep, session: SessionDep, ctx: ContextDep
) -> ApiKeyCreated:
    issued = await api_key_service.rotate_api_key(
        session, user, api_key, pepper=ctx.settings.auth.api_key_pepper.get_secret_value()
    )
    return created(issued)
