"""The team (owners): invite members, change roles, deactivate, issue reset links."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, status

from milepost_api.deps import AUTHENTICATED, ContextDep, OwnerUser
from milepost_api.http_cache import REVALIDATE, cache_control
from milepost_api.routes.account import INVITATION_PAGE, PASSWORD_RESET_PAGE
from milepost_api.schemas import (
    Invitation,
    InvitedMember,
    ResetLink,
    RoleChange,
    TeamMemberRead,
)
from milepost_common.domain.users import service as user_service
from milepost_common.domain.users.errors import (
    EmailTaken,
    LastOwner,
    MemberLimitReached,
    UserNotFound,
)
from milepost_common.domain.users.models import OrgRole
from milepost_common.domain.users.schemas import UserCreate, UserFilters, UserListSort, UserSort
from milepost_common.errors import Conflict, Forbidden, Unauthorized, ValidationFailed
from milepost_common.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from milepost_common.web.deps import SessionDep
from milepost_common.web.errors import error_responses

router = APIRouter(prefix="/v1/users", tags=["team"], responses=AUTHENTICATED)


def _link(ctx: ContextDep, page: str, token: str) -> str:
    # The api's own account page (routes/account.py). The token travels in the fragment:
    # browsers never send it to a server or a log.
    return f"{ctx.settings.api.public_url.rstrip('/')}{page}#token={quote(token)}"


@router.get("", summary="List team members", responses=error_responses(Unauthorized, Forbidden))
@cache_control(REVALIDATE)
async def list_users(
    user: OwnerUser,
    session: SessionDep,
    q: Annotated[str | None, Query(max_length=320, description="Part of email or name.")] = None,
    role: OrgRole | None = None,
    is_active: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    sort: UserSort = UserSort.CREATED_AT,
) -> Page[TeamMemberRead]:
    """Owners only. Ascending by creation time (`sort=-created_at` for newest first)."""
    filters = UserFilters(
        org_id=user.require_org(),
        q=q,
        role=role,
        is_active=is_active,
        limit=limit,
        cursor=cursor,
        sort=UserListSort(sort),
    )
    result = await user_service.list_users(session, filters)
    return Page(
        items=[TeamMemberRead.model_validate(u) for u in result.items],
        next_cursor=result.next_cursor,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Invite a team member",
    responses=error_responses(
        Unauthorized, Forbidden, EmailTaken, MemberLimitReached, ValidationFailed
    ),
)
async def create_user(
    user: OwnerUser, body: Invitation, session: SessionDep, ctx: ContextDep
) -> InvitedMember:
    """Owners only. The answer carries a one-time `invite_url` (48 hours) to hand to the
    new member, who sets a password with `POST /auth/invitations/accept`.

    An organization has at most 1,000 active members by default (a server setting;
    invitations not yet accepted count, deactivated members do not): one more answers 409."""
    created = await user_service.create_user(
        session,
        user,
        user.require_org(),
        UserCreate(email=body.email, role=body.role, name=body.name),
        hasher=ctx.hasher,
        limit=ctx.settings.api.max_users_per_org,
    )
    assert created.invitation_token is not None  # noqa: S101 - created without a password
    member = TeamMemberRead.model_validate(created.user)
    return InvitedMember(
        **member.model_dump(), invite_url=_link(ctx, INVITATION_PAGE, created.invitation_token)
    )


@router.get(
    "/{user_id}",
    summary="Get a team member",
    responses=error_responses(Unauthorized, Forbidden, UserNotFound, ValidationFailed),
)
@cache_control(REVALIDATE)
async def get_user(user: OwnerUser, user_id: uuid.UUID, session: SessionDep) -> TeamMemberRead:
    """Owners only."""
    return TeamMemberRead.model_validate(
        await user_service.get_user(session, user_id, org_id=user.require_org())
    )


@router.patch(
    "/{user_id}",
    summary="Change a member's role",
    responses=error_responses(Unauthorized, Forbidden, UserNotFound, LastOwner, ValidationFailed),
)
async def change_user_role(
    user: OwnerUser, user_id: uuid.UUID, body: RoleChange, session: SessionDep
) -> TeamMemberRead:
    """Owners only. 409 when it would leave the organization without an active owner."""
    member = await user_service.get_user(session, user_id, org_id=user.require_org())
    return TeamMemberRead.model_validate(
        await user_service.change_user_role(session, user, member, body.role)
    )


@router.post(
    "/{user_id}/deactivate",
    summary="Deactivate a member",
    responses=error_responses(Unauthorized, Forbidden, UserNotFound, LastOwner, ValidationFailed),
)
async def deactivate_user(
    user: OwnerUser, user_id: uuid.UUID, session: SessionDep
) -> TeamMemberRead:
    """Owners only; idempotent. The member's tokens stop working on their next request and
    every refresh token is revoked."""
    member = await user_service.get_user(session, user_id, org_id=user.require_org())
    return TeamMemberRead.model_validate(await user_service.deactivate_user(session, user, member))


@router.post(
    "/{user_id}/password-reset",
    summary="Issue a password-reset link",
    responses=error_responses(Unauthorized, Forbidden, UserNotFound, Conflict, ValidationFailed),
)
async def reset_user_password(
    user: OwnerUser, user_id: uuid.UUID, session: SessionDep, ctx: ContextDep
) -> ResetLink:
    """Owners only. A one-time `reset_url` (48 hours) for the member, redeemed with
    `POST /auth/password-reset`; earlier unused links die."""
    member = await user_service.get_user(session, user_id, org_id=user.require_org())
    token = await user_service.reset_user_password(session, user, member)
    return ResetLink(reset_url=_link(ctx, PASSWORD_RESET_PAGE, token))
