"""Users and operators: creation, lookup by email (case-insensitive)."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import col, select
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.audit import service as audit
from milepost_common.domain.principals import Principal
from milepost_common.domain.users.models import PlatformRole, User
from milepost_common.errors import Conflict


def normalize_email(email: str) -> str:
    return email.strip().lower()


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
