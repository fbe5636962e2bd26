"""Users of organizations: create (password or invitation), change role, deactivate,
reactivate, reset password."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from milepost_admin.deps import AUTH_ERRORS, ContextDep, OperatorUser, SupportUser
from milepost_admin.links import invite_url, reset_url
from milepost_common.domain.organizations import service as org_service
from milepost_common.domain.organizations.errors import OrganizationNotFound
from milepost_common.domain.sessions.service import ONE_TIME_TOKEN_TTL
from milepost_common.domain.users import service as user_service
from milepost_common.domain.users.errors import EmailTaken, LastOwner, UserNotFound
from milepost_common.domain.users.models import User
from milepost_common.domain.users.schemas import (
    PasswordResetLink,
    UserCreate,
    UserCreated,
    UserFilters,
    UserRead,
    UserUpdate,
)
from milepost_common.errors import Conflict, ValidationFailed
from milepost_common.pagination import Page
from milepost_common.web.deps import SessionDep
from milepost_common.web.errors import error_responses

router = APIRouter(prefix="/v1", tags=["users"])


async def load_user(user_id: uuid.UUID, session: SessionDep) -> User:
    return await user_service.get_user(session, user_id)


UserDep = Annotated[User, Depends(load_user)]


@router.post(
    "/organizations/{org_id}/users",
    status_code=201,
    summary="Create a user (with a password, or invited by a one-time link)",
    description="Without `password`, the answer carries `invite_url`, valid 48 hours.",
    responses=error_responses(*AUTH_ERRORS, OrganizationNotFound, EmailTaken, ValidationFailed),
)
async def create_user(
    user: OperatorUser,
    org_id: uuid.UUID,
    body: UserCreate,
    session: SessionDep,
    ctx: ContextDep,
) -> UserCreated:
    org = await org_service.get_organization(session, org_id)
    created = await user_service.create_user(session, user, org.id, body, hasher=ctx.hasher)
    link = invite_url(ctx.settings, created.invitation_token) if created.invitation_token else None
    return UserCreated.model_validate(
        {**UserRead.model_validate(created.user).model_dump(), "invite_url": link}
    )


@router.get(
    "/organizations/{org_id}/users",
    summary="List an organization's users",
    responses=error_responses(*AUTH_ERRORS, OrganizationNotFound),
)
async def list_organization_users(
    _user: SupportUser,
    org_id: uuid.UUID,
    filters: Annotated[UserFilters, Query()],
    session: SessionDep,
) -> Page[UserRead]:
    org = await org_service.get_organization(session, org_id)
    page = await user_service.list_users(session, filters.model_copy(update={"org_id": org.id}))
    return Page(
        items=[UserRead.model_validate(u) for u in page.items], next_cursor=page.next_cursor
    )


@router.get(
    "/users", summary="Search users of every organization", responses=error_responses(*AUTH_ERRORS)
)
async def list_users(
    _user: SupportUser, filters: Annotated[UserFilters, Query()], session: SessionDep
) -> Page[UserRead]:
    page = await user_service.list_users(session, filters)
    return Page(
        items=[UserRead.model_validate(u) for u in page.items], next_cursor=page.next_cursor
    )


@router.get(
    "/users/{user_id}", summary="Read a user", responses=error_responses(*AUTH_ERRORS, UserNotFound)
)
async def get_user(_user: SupportUser, target: UserDep) -> UserRead:
    return UserRead.model_validate(target)


@router.patch(
    "/users/{user_id}",
    summary="Change a user's role",
    responses=error_responses(*AUTH_ERRORS, UserNotFound, LastOwner, ValidationFailed),
)
async def change_user_role(
    user: OperatorUser, target: UserDep, body: UserUpdate, session: SessionDep
) -> UserRead:
    return UserRead.model_validate(
        await user_service.change_user_role(session, user, target, body.role)
    )


@router.post(
    "/users/{user_id}/deactivate",
    summary="Deactivate a user (idempotent; sessions revoked)",
    responses=error_responses(*AUTH_ERRORS, UserNotFound, LastOwner),
)
async def deactivate_user(user: OperatorUser, target: UserDep, session: SessionDep) -> UserRead:
    return UserRead.model_validate(await user_service.deactivate_user(session, user, target))


@router.post(
    "/users/{user_id}/reactivate",
    summary="Reactivate a user (idempotent)",
    responses=error_responses(*AUTH_ERRORS, UserNotFound),
)
async def reactivate_user(user: OperatorUser, target: UserDep, session: SessionDep) -> UserRead:
    return UserRead.model_validate(await user_service.reactivate_user(session, user, target))


@router.post(
    "/users/{user_id}/reset-password",
    summary="Create a one-time password-reset link (48 h)",
    responses=error_responses(*AUTH_ERRORS, UserNotFound, Conflict),
)
async def reset_user_password(
    user: OperatorUser, target: UserDep, session: SessionDep, ctx: ContextDep
) -> PasswordResetLink:
    raw = await user_service.reset_user_password(session, user, target)
    return PasswordResetLink(
        reset_url=reset_url(ctx.settings, raw),
        expires_at=datetime.now(UTC) + ONE_TIME_TOKEN_TTL,
    )
