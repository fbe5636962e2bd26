"""Platform operators: everyone reads the list, only a superadmin changes it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from milepost_admin.deps import AUTH_ERRORS, ContextDep, SuperadminUser, SupportUser
from milepost_admin.links import operator_invite_url, operator_reset_url
from milepost_common.domain.operators import service as operator_service
from milepost_common.domain.operators.errors import OperatorNotFound, OwnAccount
from milepost_common.domain.operators.schemas import (
    OperatorCreate,
    OperatorCreated,
    OperatorFilters,
    OperatorRead,
    OperatorUpdate,
)
from milepost_common.domain.sessions.service import ONE_TIME_TOKEN_TTL
from milepost_common.domain.users import service as user_service
from milepost_common.domain.users.errors import EmailTaken
from milepost_common.domain.users.models import User
from milepost_common.domain.users.schemas import PasswordResetLink
from milepost_common.errors import Conflict, ValidationFailed
from milepost_common.pagination import Page
from milepost_common.web.deps import SessionDep
from milepost_common.web.errors import error_responses

router = APIRouter(prefix="/v1/operators", tags=["operators"])


async def load_operator(operator_id: uuid.UUID, session: SessionDep) -> User:
    return await operator_service.get_operator(session, operator_id)


OperatorDep = Annotated[User, Depends(load_operator)]


@router.post(
    "",
    status_code=201,
    summary="Create an operator (superadmin)",
    description="Without `password`, the answer carries `invite_url`, valid 48 hours.",
    responses=error_responses(*AUTH_ERRORS, EmailTaken, ValidationFailed),
)
async def create_operator(
    user: SuperadminUser, body: OperatorCreate, session: SessionDep, ctx: ContextDep
) -> OperatorCreated:
    created = await operator_service.create_operator(
        session,
        user,
        email=body.email,
        role=body.role,
        password=body.password,
        name=body.name,
        hasher=ctx.hasher,
    )
    token = created.invitation_token
    return OperatorCreated.model_validate(
        {
            **OperatorRead.model_validate(created.user).model_dump(),
            "invite_url": operator_invite_url(ctx.settings, token) if token else None,
        }
    )


@router.get("", summary="List operators", responses=error_responses(*AUTH_ERRORS))
async def list_operators(
    _user: SupportUser, filters: Annotated[OperatorFilters, Query()], session: SessionDep
) -> Page[OperatorRead]:
    page = await operator_service.list_operators(session, filters)
    return Page(
        items=[OperatorRead.model_validate(u) for u in page.items], next_cursor=page.next_cursor
    )


@router.get(
    "/{operator_id}",
    summary="Read an operator",
    responses=error_responses(*AUTH_ERRORS, OperatorNotFound),
)
async def get_operator(_user: SupportUser, operator: OperatorDep) -> OperatorRead:
    return OperatorRead.model_validate(operator)


@router.patch(
    "/{operator_id}",
    summary="Change an operator's role (superadmin)",
    responses=error_responses(*AUTH_ERRORS, OperatorNotFound, OwnAccount, ValidationFailed),
)
async def change_operator_role(
    user: SuperadminUser, operator: OperatorDep, body: OperatorUpdate, session: SessionDep
) -> OperatorRead:
    return OperatorRead.model_validate(
        await operator_service.change_operator_role(session, user, operator, body.role)
    )


@router.post(
    "/{operator_id}/deactivate",
    summary="Deactivate an operator (superadmin; idempotent)",
    responses=error_responses(*AUTH_ERRORS, OperatorNotFound, OwnAccount),
)
async def deactivate_operator(
    user: SuperadminUser, operator: OperatorDep, session: SessionDep
) -> OperatorRead:
    return OperatorRead.model_validate(
        await operator_service.deactivate_operator(session, user, operator)
    )


@router.post(
    "/{operator_id}/reactivate",
    summary="Reactivate an operator (superadmin; idempotent)",
    responses=error_responses(*AUTH_ERRORS, OperatorNotFound),
)
async def reactivate_operator(
    user: SuperadminUser, operator: OperatorDep, session: SessionDep
) -> OperatorRead:
    return OperatorRead.model_validate(
        await operator_service.reactivate_operator(session, user, operator)
    )


@router.post(
    "/{operator_id}/reset-password",
    summary="Create a one-time password-reset link for an operator (superadmin)",
    responses=error_responses(*AUTH_ERRORS, OperatorNotFound, Conflict),
)
async def reset_operator_password(
    user: SuperadminUser, operator: OperatorDep, session: SessionDep, ctx: ContextDep
) -> PasswordResetLink:
    raw = await user_service.reset_user_password(session, user, operator)
    return PasswordResetLink(
        reset_url=operator_reset_url(ctx.settings, raw),
        expires_at=datetime.now(UTC) + ONE_TIME_TOKEN_TTL,
    )
