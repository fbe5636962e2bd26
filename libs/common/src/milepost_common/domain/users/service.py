"""Users and operators: creation (with a password or an invitation link), roles,
deactivation, password resets, lookup by email (case-insensitive).

The public API calls these for an owner's self-service and the admin app for operators;
both pass the acting principal, and every change is audited in the caller's transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, or_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select
from sqlmodel.sql.expression import SelectOfScalar

from milepost_common.auth import PasswordHasher, normalize_email
from milepost_common.domain import paging
from milepost_common.domain.audit import service as audit
from milepost_common.domain.organizations import repository as org_repository
from milepost_common.domain.principals import Principal
from milepost_common.domain.sessions import service as sessions
from milepost_common.domain.users.errors import (
    EmailTaken,
    LastOwner,
    OperatorNotFound,
    OwnAccount,
    UserNotFound,
    WrongPassword,
)
from milepost_common.domain.users.models import OrgRole, PlatformRole, TokenPurpose, User
from milepost_common.domain.users.schemas import (
    OperatorCreate,
    OperatorFilters,
    UserCreate,
    UserFilters,
    UserListSort,
)
from milepost_common.errors import Conflict


@dataclass(frozen=True, slots=True)
class CreatedUser:
    user: User
    invitation_token: str | None  # the raw one-time token, when invited without a password


async def find_user_by_email(session: AsyncSession, email: str) -> User | None:
    query = select(User).where(func.lower(col(User.email)) == normalize_email(email))
    return (await session.scalars(query)).first()


async def create_operator(
    session: AsyncSession, actor: Principal, *, email: str, password_hash: str, role: PlatformRole
) -> User:
    """Raises Conflict when the email is taken (emails are unique platform-wide). Audited."""
    if await find_user_by_email(session, email) is not None:
        raise Conflict("A user with this email already exists.")
    user = User(email=normalize_email(email), password_hash=password_hash, platform_role=role)
    session.add(user)
    await session.flush()
    await audit.record(
        session,
        actor,
        "operators.create",
        target_type="user",
        target_id=user.id,
        diff={"email": user.email, "platform_role": role.value},
    )
    return user


async def _insert_user(session: AsyncSession, user: User) -> None:
    """Flush a new user; a concurrent insert of the same email becomes EmailTaken (409)."""
    if await find_user_by_email(session, user.email) is not None:
        raise EmailTaken()
    try:
        async with session.begin_nested():
            session.add(user)
            await session.flush()
    except IntegrityError:
        raise EmailTaken() from None


async def _new_account(
    session: AsyncSession, user: User, password: str | None, hasher: PasswordHasher
) -> str | None:
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
) -> CreatedUser:
    """A member of ``org_id``; without a password, an invitation token (48 h) comes back.

    Raises EmailTaken (409). Audited (``users.create``), never with the password.
    """
    user = User(org_id=org_id, email=normalize_email(data.email), name=data.name, role=data.role)
    token = await _new_account(session, user, data.password, hasher)
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
    user = await session.get(User, user_id)
    if user is None or user.org_id is None or (org_id is not None and user.org_id != org_id):
        raise UserNotFound()
    return user


async def _page(
    session: AsyncSession,
    query: SelectOfScalar[User],
    limit: int,
    cursor: str | None,
    sort: UserListSort,
) -> paging.PageResult[User]:
    return await paging.sorted_page(session, query, User, sort, limit=limit, cursor=cursor)


def _searched(
    query: SelectOfScalar[User], q: str | None, is_active: bool | None
) -> SelectOfScalar[User]:
    """Narrowed to a text found in the email or name, and to the active flag, when given."""
    if q:
        query = query.where(
            or_(
                col(User.email).icontains(q, autoescape=True),
                col(User.name).icontains(q, autoescape=True),
            )
        )
    if is_active is not None:
        query = query.where(User.is_active == is_active)
    return query


async def count_users(session: AsyncSession, org_id: uuid.UUID) -> int:
    """How many users the organization has now (active or not)."""
    query = select(func.count()).select_from(User).where(col(User.org_id) == org_id)
    return int(await session.scalar(query) or 0)


async def list_users(session: AsyncSession, filters: UserFilters) -> paging.PageResult[User]:
    """Organization members (of one organization or all, or of those whose name contains
    ``org_name``), a keyset page by the filters' sort."""
    query = select(User).where(col(User.org_id).is_not(None))
    if filters.org_id is not None:
        query = query.where(User.org_id == filters.org_id)
    if filters.org_name:
        query = query.where(col(User.org_id).in_(org_repository.ids_named(filters.org_name)))
    if filters.role is not None:
        query = query.where(User.role == filters.role)
    query = _searched(query, filters.q, filters.is_active)
    return await _page(session, query, filters.limit, filters.cursor, filters.sort)


async def _other_active_owners(session: AsyncSession, user: User) -> int:
    query = (
        select(func.count())
        .select_from(User)
        .where(
            User.org_id == user.org_id,
            User.role == OrgRole.OWNER,
            col(User.is_active).is_(True),
            User.id != user.id,
        )
    )
    return int(await session.scalar(query) or 0)


async def _guard_last_owner(session: AsyncSession, user: User) -> None:
    if (
        user.role == OrgRole.OWNER
        and user.is_active
        and not await _other_active_owners(session, user)
    ):
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


async def _set_active(
    session: AsyncSession, actor: Principal, user: User, active: bool, feature: str
) -> User:
    if user.is_active == active:
        return user
    user.is_active = active
    user.updated_at = datetime.now(UTC)
    session.add(user)
    await session.flush()
    if not active:
        await sessions.revoke_user_sessions(session, user.id)
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
    return await _set_active(session, actor, user, False, "users")


async def reactivate_user(session: AsyncSession, actor: Principal, user: User) -> User:
    """Idempotent. Audited."""
    return await _set_active(session, actor, user, True, "users")


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


async def create_operator_account(
    session: AsyncSession, actor: Principal, data: OperatorCreate, *, hasher: PasswordHasher
) -> CreatedUser:
    """A platform operator; without a password, an invitation token (48 h) comes back.

    Raises EmailTaken (409). Audited (``operators.create``).
    """
    user = User(email=normalize_email(data.email), name=data.name, platform_role=data.role)
    token = await _new_account(session, user, data.password, hasher)
    await audit.record(
        session,
        actor,
        "operators.create",
        target_type="user",
        target_id=user.id,
        diff={"email": user.email, "platform_role": data.role.value, "invited": token is not None},
    )
    return CreatedUser(user, token)


async def get_operator(session: AsyncSession, operator_id: uuid.UUID) -> User:
    """Raises OperatorNotFound unless the id is a platform operator's."""
    user = await session.get(User, operator_id)
    if user is None or user.platform_role is None:
        raise OperatorNotFound()
    return user


async def list_operators(
    session: AsyncSession, filters: OperatorFilters
) -> paging.PageResult[User]:
    query = select(User).where(col(User.platform_role).is_not(None))
    if filters.role is not None:
        query = query.where(User.platform_role == filters.role)
    query = _searched(query, filters.q, filters.is_active)
    return await _page(session, query, filters.limit, filters.cursor, filters.sort)


def _not_self(actor: Principal, operator: User) -> None:
    if actor.id == operator.id:
        raise OwnAccount()


async def change_operator_role(
    session: AsyncSession, actor: Principal, operator: User, role: PlatformRole
) -> User:
    """Idempotent. Raises OwnAccount (409) for the actor's own account. Audited."""
    _not_self(actor, operator)
    if operator.platform_role == role:
        return operator
    before = operator.platform_role
    operator.platform_role = role
    operator.updated_at = datetime.now(UTC)
    session.add(operator)
    await session.flush()
    await audit.record(
        session,
        actor,
        "operators.change_role",
        target_type="user",
        target_id=operator.id,
        diff={"platform_role": [str(before) if before else None, role.value]},
    )
    return operator


async def deactivate_operator(session: AsyncSession, actor: Principal, operator: User) -> User:
    """Idempotent; the operator's tokens and console sessions stop at the next request.
    Raises OwnAccount (409) for the actor's own account. Audited."""
    _not_self(actor, operator)
    return await _set_active(session, actor, operator, False, "operators")


async def reactivate_operator(session: AsyncSession, actor: Principal, operator: User) -> User:
    """Idempotent. Audited."""
    return await _set_active(session, actor, operator, True, "operators")


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
    await sessions.revoke_user_sessions(session, user.id)
    await audit.record(
        session, actor, "users.change_password", target_type="user", target_id=user.id
    )
    return user
