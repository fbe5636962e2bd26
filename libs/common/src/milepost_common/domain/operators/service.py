"""Platform operators' accounts: creation (with a password or an invitation link), roles,
deactivation. Operators are ``users`` rows with a platform role and no organization; what
they share with members (email lookup, invitations, password resets) is ``users.service``.

Only the admin app calls these, passing the acting operator; every change is audited in
the caller's transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel

from milepost_common.auth import PasswordHasher, normalize_email
from milepost_common.domain import paging
from milepost_common.domain.audit import service as audit
from milepost_common.domain.operators.errors import OperatorNotFound, OwnAccount
from milepost_common.domain.operators.repository import OperatorRepository
from milepost_common.domain.operators.schemas import OperatorFilters
from milepost_common.domain.principals import Principal
from milepost_common.domain.users import service as user_service
from milepost_common.domain.users.models import PlatformRole, User
from milepost_common.domain.users.repository import UserRepository
from milepost_common.errors import Forbidden


async def create_operator(
    session: AsyncSession,
    actor: Principal,
    *,
    email: str,
    role: PlatformRole,
    hasher: PasswordHasher,
    password: str | None = None,
    name: str | None = None,
) -> user_service.CreatedUser:
    """A platform operator; without a password, an invitation token (48 h) comes back.

    The one way to create an operator (the admin API, the console and the CLI). Raises
    EmailTaken (409) when the email is taken (emails are unique platform-wide). Audited
    (``operators.create``), never with the password.
    """
    user = User(email=normalize_email(email), name=name, platform_role=role)
    token = await user_service.new_account(session, user, password, hasher)
    await audit.record(
        session,
        actor,
        "operators.create",
        target_type="user",
        target_id=user.id,
        diff={"email": user.email, "platform_role": role.value, "invited": token is not None},
    )
    return user_service.CreatedUser(user, token)


async def get_operator(session: AsyncSession, operator_id: uuid.UUID) -> User:
    """Raises OperatorNotFound unless the id is a platform operator's."""
    user = await UserRepository(session).get(operator_id)
    if user is None or user.platform_role is None:
        raise OperatorNotFound()
    return user


async def find_operator(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    """For operators: the platform operator with this id, active or not; None for a missing
    user or one without a platform role (the console re-checks its session's operator)."""
    user = await UserRepository(session).get(user_id)
    return user if user is not None and user.platform_role is not None else None


async def find_labels(
    session: AsyncSession, model: type[SQLModel], label: str, ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """For operators: the ``label`` column of the rows of ``model`` with these ids, by id
    (the console's table views show it beside an id); missing rows are left out."""
    if not ids:
        return {}
    return dict(await OperatorRepository(session).labels(model, label, ids))


async def list_operators(
    session: AsyncSession, filters: OperatorFilters
) -> paging.PageResult[User]:
    return await OperatorRepository(session).page(filters)


def _not_self(actor: Principal, operator: User) -> None:
    if actor.id == operator.id:
        raise OwnAccount()


async def _lock_with_actor(session: AsyncSession, actor: Principal, operator: User) -> None:
    """Lock the operator's and the actor's rows, then check that the actor is still an active
    superadmin. Its role was checked when the request was authorized, before the locks: two
    superadmins demoting or deactivating each other at once would both pass, leaving nobody
    to manage operators. Raises Forbidden for the second."""
    if actor.id is None:  # the platform itself (bootstrap, command line)
        return
    acting = (await OperatorRepository(session).lock_accounts({actor.id, operator.id})).get(
        actor.id
    )
    if acting is None or not acting.is_active or acting.platform_role != PlatformRole.SUPERADMIN:
        raise Forbidden()


async def change_operator_role(
    session: AsyncSession, actor: Principal, operator: User, role: PlatformRole
) -> User:
    """Idempotent. A change ends the operator's console sessions and admin tokens: it signs
    in again to work with the new role. Raises OwnAccount (409) for the actor's own account,
    Forbidden when the actor is no longer a superadmin (demoted meanwhile). Audited."""
    _not_self(actor, operator)
    await _lock_with_actor(session, actor, operator)
    if operator.platform_role == role:
        return operator
    before = operator.platform_role
    operator.platform_role = role
    # A demotion is seen on the next request anyway (the role is re-read each time); ending
    # the sessions also keeps a promotion from reaching a session left open or taken, and
    # the SSO login that syncs a role opens its session after this.
    operator.updated_at = operator.sessions_ended_at = datetime.now(UTC)
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
    await _lock_with_actor(session, actor, operator)
    return await user_service.set_active(session, actor, operator, False, "operators")


async def reactivate_operator(session: AsyncSession, actor: Principal, operator: User) -> User:
    """Idempotent. Audited."""
    return await user_service.set_active(session, actor, operator, True, "operators")
