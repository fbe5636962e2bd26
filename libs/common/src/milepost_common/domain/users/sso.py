"""Operators' single sign-on identities: the provider's (iss, sub), bound on the first SSO login.

An email is only the key of that first login. Afterwards the operator is found by the
identity alone, so a changed email at the provider can never lead to another operator, and
a second identity claiming a bound operator's email is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain.users import service as user_service
from milepost_common.domain.users.errors import SsoLoginRefused
from milepost_common.domain.users.models import User


@dataclass(frozen=True, slots=True)
class SsoIdentity:
    """What the provider vouched for: ``email`` only when it verified it."""

    issuer: str
    subject: str
    email: str


@dataclass(frozen=True, slots=True)
class SsoMatch:
    user: User
    bound_now: bool  # this login bound the identity (the operator's first SSO login)


async def find_sso_operator(session: AsyncSession, identity: SsoIdentity) -> SsoMatch:
    """The active operator bound to the identity, or, when none is, the active operator
    with its verified email, then bound to it. Raises SsoLoginRefused otherwise: no such
    operator, or the email's operator is bound to another identity."""
    bound = (
        await session.scalars(
            select(User).where(
                col(User.sso_issuer) == identity.issuer,
                col(User.sso_subject) == identity.subject,
            )
        )
    ).first()
    if bound is not None:
        if bound.platform_role is None or not bound.is_active:
            raise SsoLoginRefused("no active operator has this identity")
        return SsoMatch(bound, bound_now=False)
    user = await user_service.find_user_by_email(session, identity.email)
    if user is None or user.platform_role is None or not user.is_active:
        raise SsoLoginRefused("no active operator has this email")
    if user.sso_subject is not None:
        raise SsoLoginRefused("this operator signs in with another identity")
    try:
        async with session.begin_nested():
            # Only while unbound: of two first logins racing, one binds and the other is
            # refused (the unique index refuses one identity bound to two operators).
            claimed = await session.execute(
                update(User)
                .where(col(User.id) == user.id, col(User.sso_subject).is_(None))
                .values(sso_issuer=identity.issuer, sso_subject=identity.subject)
                .returning(col(User.id))
            )
            if claimed.first() is None:
                raise SsoLoginRefused("this operator signs in with another identity")
    except IntegrityError:
        raise SsoLoginRefused("this identity is bound to another operator") from None
    await session.refresh(user)
    return SsoMatch(user, bound_now=True)
