"""Operators' single sign-on identities: the provider's (iss, sub), bound on the first SSO login.

An email is only the key of that first login. Afterwards the operator is found by the
identity alone, so a changed email at the provider can never lead to another operator, and
a second identity claiming a bound operator's email is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.operators.errors import SsoLoginRefused
from milepost_common.domain.operators.repository import Binding, OperatorRepository
from milepost_common.domain.users.models import User
from milepost_common.domain.users.repository import UserRepository


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
    operators = OperatorRepository(session)
    bound = await operators.find_by_sso_identity(identity.issuer, identity.subject)
    if bound is not None:
        if bound.platform_role is None or not bound.is_active:
            raise SsoLoginRefused("no active operator has this identity")
        return SsoMatch(bound, bound_now=False)
    user = await UserRepository(session).find_by_email(identity.email)
    if user is None or user.platform_role is None or not user.is_active:
        raise SsoLoginRefused("no active operator has this email")
    if user.sso_subject is not None:
        raise SsoLoginRefused("this operator signs in with another identity")
    binding = await operators.bind_sso_identity(user, identity.issuer, identity.subject)
    if binding is Binding.OPERATOR_TAKEN:
        raise SsoLoginRefused("this operator signs in with another identity")
    if binding is Binding.IDENTITY_TAKEN:
        raise SsoLoginRefused("this identity is bound to another operator")
    return SsoMatch(user, bound_now=True)
