"""Organization members: creation (with a password or an invitation link), roles,
deactivation, password resets, lookup by email (case-insensitive); and what every account
shares, members and operators alike (``new_account``, ``set_active``, password resets;
operators' own use cases are ``domain/operators``).

The public API calls these for an owner's self-service and the admin app for operators;
both pass the acting principal, and every change is audited in the caller's transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.auth import PasswordHasher, normalize_email
from milepost_common.domain import paging
from milepost_common.domain.audit import service as audit
from milepost_common.domain.base import lock_org_for_limit
from milepost_common.domain.principals import Principal
from milepost_common.domain.sessions import service as sessions
from milepost_common.domain.sessions.models import TokenPurpose
from milepost_common.domain.users.errors import (
    EmailTaken,
    LastOwner,
    MemberLimitReached,
    UserNotFound,
    WrongPassword,
)
from milepost_common.domain.users.models import OrgRole, User
from milepost_common.domain.users.repository import UserRepository
from milepost_common.domain.users.schemas import UserCreate, UserFilters
from milepost_common.errors import Conflict


@dataclass(frozen=True, slots=True)
class CreatedUser:
    user: User
    invitation_token: str | None  # the raw one-time token, when invited without a password


async def find_user_by_email(session: AsyncSession, email: str) -> User | None:
    """Any account (member or operator) with this email, compared case-insensitively."""
    return await UserRepository(session).find_by_email(email)


async def _insert_user(session: AsyncSession, user: User) -> None:
    """Flush a new user; a concurrent insert of the same email becomes EmailTaken (409)."""
    users = UserRepository(session)
    if await users.find_by_email(user.email) is not None or not await users.insert(user):
        raise EmailTaken()


async def new_account(
    session: AsyncSession, user: User, password: str | None, hasher: PasswordHasher
) -> str | None:
    """Store a new member or operator with a password, or none and an invitation token
    (returned raw). Raises EmailTaken (409). Not audited: the caller records what it did."""
    user.password_hash = await hasher.hash(password) if password is not None else None
    if password is not None:
        user.password_changed_at = datetime.now(UTC)
    await _insert_user(session, user)
    if password is None:
        return await sessions.issue_one_time_token(session, user, TokenPurpose.INVITATION)
    return None


async def create_user(
    session: AsyncSession,
    actor: Principal,
    org_id: uuid.UUID,
    data: UserCreate,
    *,
    hasher: PasswordHasher,
    limit: int | None = None,
) -> CreatedUser:
    """A member of ``org_id``; without a password, an invitation token (48 h) comes back.

    Raises EmailTaken (409), or MemberLimitReached (409) when ``limit`` is given and the
    organization already has that many active members (counted with its row locked).
    Audited (``users.create``), never with the password.
    """
    if limit is not None:
        await lock_org_for_limit(session, org_id)
        if await UserRepository(session).count_active_for_org(org_id) >= limit:
            raise MemberLimitReached.at(limit)
    user = User(org_id=org_id, email=normalize_email(data.email), name=data.name, role=data.role)
    token = await new_account(session, user, data.password, hasher)
    await audit.record(
        session,
        actor,
        "users.create",
        target_type="user",
        target_id=user.id,
        org_id=org_id,
        diff={"email": user.email, "role": data.role.value, "invited": token is not None},
    )
    return CreatedUser(user, token)


async def get_user(
    session: AsyncSession, user_id: uuid.UUID, *, org_id: uuid.UUID | None = None
) -> User:
    """An organization member (of ``org_id`` when given). Raises UserNotFound otherwise."""
    user = await UserRepository(session).get(user_id)
    if user is None or user.org_id is None or (org_id is not None and user.org_id != org_id):
        raise UserNotFound()
    return user


async def count_users(session: AsyncSession, org_id: uuid.UUID) -> int:
    """How many users the organization has now (active or not)."""
    return await UserRepository(session).count_for_org(org_id)


async def list_users(session: AsyncSession, filters: UserFilters) -> paging.PageResult[User]:
    """Organization members (of one organization or all, or of those whose name contains
    ``org_name``), a keyset page by the filters' sort."""
    return await UserRepository(session).page_members(filters)


async def _guard_last_owner(session: AsyncSession, user: User) -> None:
    """Raises LastOwner when no other owner could still log in without ``user``. Counted
    with the organization's row locked: two owners demoting each other at once cannot both
    pass."""
    if user.role != OrgRole.OWNER or not user.is_active or user.org_id is None:
        return
    await lock_org_for_limit(session, user.org_id)
    if not await UserRepository(session).count_other_owners_who_log_in(user):
        raise LastOwner()


async def change_user_role(
    session: AsyncSession, actor: Principal, user: User, role: OrgRole
) -> User:
    """Idempotent. Raises LastOwner (409) when it would leave the organization without an
    active owner. Audited (``users.change_role``) when the role changes."""
    if user.role == role:
        return user
    if role != OrgRole.OWNER:
        await _guard_last_owner(session, user)
    before = user.role
    user.role = role
    user.updated_at = datetime.now(UTC)
    session.add(user)
    await session.flush()
    await audit.record(
        session,
        actor,
        "users.change_role",
        target_type="user",
        target_id=user.id,
        org_id=user.org_id,
        diff={"role": [str(before) if before else None, role.value]},
    )
    return user


async def set_active(
    session: AsyncSession, actor: Principal, user: User, active: bool, feature: str
) -> User:
    """Idempotent: (de)activate a member or an operator; deactivation revokes its refresh
    tokens. Audited as ``<feature>.deactivate`` or ``<feature>.reactivate``."""
    if user.is_active == active:
        return user
    user.is_active = active
    user.updated_at = datetime.now(UTC)
    session.add(user)
    await session.flush()
    if not active:
        await sessions.revoke_user_sessions(session, user)
    await audit.record(
        session,
        actor,
        f"{feature}.{'reactivate' if active else 'deactivate'}",
        target_type="user",
        target_id=user.id,
        org_id=user.org_id,
        diff={"is_active": [not active, active]},
    )
    return user


async def deactivate_user(session: AsyncSession, actor: Principal, user: User) -> User:
    """Idempotent. The user's tokens are refused from the next request on and every refresh
    token is revoked. Raises LastOwner (409) for the last active owner. Audited."""
    if user.is_active:
        await _guard_last_owner(session, user)
    return await set_active(session, actor, user, False, "users")


async def reactivate_user(session: AsyncSession, actor: Principal, user: User) -> User:
    """Idempotent. Audited."""
    return await set_active(session, actor, user, True, "users")


async def reset_user_password(session: AsyncSession, actor: Principal, user: User) -> str:
    """A one-time password-reset token (48 h; earlier unused ones die). The current password
    keeps working until the link is used. Audited (never with the token)."""
    if not user.is_active:
        raise Conflict("This account is deactivated.")
    raw = await sessions.issue_one_time_token(session, user, TokenPurpose.PASSWORD_RESET)
    feature = "operators" if user.platform_role is not None else "users"
    await audit.record(
        session,
        actor,
        f"{feature}.reset_password",
        target_type="user",
        target_id=user.id,
        org_id=user.org_id,
    )
    return raw


async def update_own_profile(session: AsyncSession, actor: Principal, *, name: str | None) -> User:
    """The actor's own account, renamed when ``name`` differs. Audited when it changes."""
    assert actor.id is not None  # noqa: S101 - a user principal always has an id
    user = await get_user(session, actor.id, org_id=actor.org_id)
    if name is not None and name != user.name:
        before = user.name
        user.name = name
        user.updated_at = datetime.now(UTC)
        session.add(user)
        await session.flush()
        await audit.record(
            session,
            actor,
            "users.update_profile",
            target_type="user",
            target_id=user.id,
            diff={"name": [before, name]},
        )
    return user


async def change_own_password(
    session: AsyncSession,
    actor: Principal,
    hasher: PasswordHasher,
    *,
    current_password: str,
    new_password: str,
) -> User:
    """Set a new password after checking the current one; every refresh token of the
    account is revoked. Raises WrongPassword (401). Audited (never with either password)."""
    assert actor.id is not None  # noqa: S101 - a user principal always has an id
    user = await get_user(session, actor.id, org_id=actor.org_id)
    if not await hasher.verify(current_password, user.password_hash):
        raise WrongPassword()
    user.password_hash = await hasher.hash(new_password)
    user.password_changed_at = user.updated_at = datetime.now(UTC)
    session.add(user)
    await session.flush()
    await sessions.revoke_user_sessions(session, user)
    await audit.record(
        session, actor, "users.change_password", target_type="user", target_id=user.id
    )
    return user
