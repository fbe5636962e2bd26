"""Statements on operators' ``users`` rows: their list and their single sign-on identity;
and what only operators read of every table: the label of a row by its id."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from enum import StrEnum

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel, col, select

from milepost_common.domain import paging
from milepost_common.domain.base import lock_by_ids
from milepost_common.domain.operators.schemas import OperatorFilters
from milepost_common.domain.users.models import User
from milepost_common.domain.users.repository import UserRepository, searched


class Binding(StrEnum):
    """How binding an SSO identity to an operator went."""

    BOUND = "bound"
    OPERATOR_TAKEN = "operator_taken"  # the operator is bound to another identity
    IDENTITY_TAKEN = "identity_taken"  # the identity is bound to another operator


class OperatorRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def page(self, filters: OperatorFilters) -> paging.PageResult[User]:
        query = select(User).where(col(User.platform_role).is_not(None))
        if filters.role is not None:
            query = query.where(User.platform_role == filters.role)
        query = searched(query, filters.q, filters.is_active)
        return await UserRepository(self.session).page(query, filters)

    async def lock_accounts(self, user_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, User]:
        """These accounts read afresh and locked (``FOR NO KEY UPDATE``, in id order: no
        deadlock between two lockers of the same pair) until the transaction ends."""
        return await lock_by_ids(self.session, User, user_ids)

    async def labels(
        self, model: type[SQLModel], label: str, ids: Collection[uuid.UUID]
    ) -> list[tuple[uuid.UUID, str]]:
        """``(id, label column)`` of the rows of ``model`` with these ids."""
        model_id = col(model.id)  # type: ignore[attr-defined]
        query = select(model_id, col(getattr(model, label))).where(model_id.in_(ids))
        return [(row_id, text) for row_id, text in (await self.session.execute(query)).all()]

    async def find_by_sso_identity(self, issuer: str, subject: str) -> User | None:
        return (
            await self.session.scalars(
                select(User).where(
                    col(User.sso_issuer) == issuer,
                    col(User.sso_subject) == subject,
                )
            )
        ).first()

    async def bind_sso_identity(self, user: User, issuer: str, subject: str) -> Binding:
        """Bind the identity to the operator while it has none; ``user`` is read afresh
        once bound. Of two first logins racing, one binds and the other is refused (the
        unique index refuses one identity bound to two operators)."""
        try:
            async with self.session.begin_nested():
                claimed = await self.session.execute(
                    update(User)
                    .where(col(User.id) == user.id, col(User.sso_subject).is_(None))
                    .values(sso_issuer=issuer, sso_subject=subject)
                    .returning(col(User.id))
                )
                if claimed.first() is None:
                    return Binding.OPERATOR_TAKEN
        except IntegrityError:
            return Binding.IDENTITY_TAKEN
        await self.session.refresh(user)
        return Binding.BOUND
