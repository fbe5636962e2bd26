"""Ingest API keys (owners): for the organization's upstream systems."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from milepost_api.deps import AUTHENTICATED, ByCreation, ContextDep, OwnerUser
from milepost_api.http_cache import REVALIDATE, cache_control
from milepost_api.schemas import ApiKeyCreate, ApiKeyIssued, ApiKeyRead
from milepost_common.domain.api_keys import service as api_key_service
from milepost_common.domain.api_keys.errors import ApiKeyLimitReached
from milepost_common.errors import Forbidden, NotFound, Unauthorized, ValidationFailed
from milepost_common.pagination import Page
from milepost_common.web.deps import SessionDep
from milepost_common.web.errors import error_responses

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"], responses=AUTHENTICATED)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Issue an ingest API key",
    responses=error_responses(Unauthorized, Forbidden, ApiKeyLimitReached, ValidationFailed),
)
async def issue_api_key(
    user: OwnerUser, body: ApiKeyCreate, session: SessionDep, ctx: ContextDep
) -> ApiKeyIssued:
    """Owners only. `key` is in this answer and never again (only its hash is stored).
    Send it as `Authorization: Bearer <key>` or `X-API-Key` to `/ingest`.

    An organization has at most 100 usable (not revoked, not expired) keys by default (a
    server setting): one more answers 409; revoking one frees room."""
    issued = await api_key_service.issue_api_key(
        session,
        user,
        user.require_org(),
        body.name,
        scopes=body.scopes,
        expires_at=body.expires_at,
        pepper=ctx.settings.auth.api_key_pepper.get_secret_value(),
        limit=ctx.settings.api.max_api_keys_per_org,
    )
    read = ApiKeyRead.model_validate(issued.api_key)
    return ApiKeyIssued(**read.model_dump(), key=issued.secret)


@router.get(
    "",
    summary="List API keys",
    responses=error_responses(Unauthorized, Forbidden, ValidationFailed),
)
@cache_control(REVALIDATE)
async def list_api_keys(user: OwnerUser, page: ByCreation, session: SessionDep) -> Page[ApiKeyRead]:
    """Owners only. The organization's keys (revoked ones too), by creation time."""
    result = await api_key_service.list_api_keys(session, user.require_org(), page)
    return Page(
        items=[ApiKeyRead.model_validate(k) for k in result.items], next_cursor=result.next_cursor
    )


@router.get(
    "/{key_id}",
    summary="Get an API key",
    responses=error_responses(Unauthorized, Forbidden, NotFound, ValidationFailed),
)
@cache_control(REVALIDATE)
async def get_api_key(user: OwnerUser, key_id: uuid.UUID, session: SessionDep) -> ApiKeyRead:
    """Owners only. Prefix and last use; never the secret."""
    return ApiKeyRead.model_validate(
        await api_key_service.get_api_key(session, key_id, user.require_org())
    )


@router.post(
    "/{key_id}/revoke",
    summary="Revoke an API key",
    responses=error_responses(Unauthorized, Forbidden, NotFound, ValidationFailed),
)
async def revoke_api_key(user: OwnerUser, key_id: uuid.UUID, session: SessionDep) -> ApiKeyRead:
    """Owners only; idempotent. Ingest refuses the key within a few seconds (each ingest
    process re-checks a key it has just seen after at most 5 s by default); an expiry, by
    contrast, holds to the instant."""
    api_key = await api_key_service.get_api_key(session, key_id, user.require_org())
    return ApiKeyRead.model_validate(await api_key_service.revoke_api_key(session, user, api_key))
