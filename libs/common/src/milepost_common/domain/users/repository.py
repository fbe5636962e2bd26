"""Statements on ``users``: lookups (by id, by email case-insensitively), counts and pages."""

from __future__ import annotations

import uuid

from sqlalchemy import func, or_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select
from sqlmodel.sql.expression import SelectOfScalar

from milepost_common.auth import normalize_email
from milepost_common.domain import paging
from milepost_common.domain.organizations import repository as org_repository
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.users.models import OrgRole, User
from milepost_common.domain.users.schemas import UserFilters


def searched(
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


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: uuid.UUID) -> User | None:
        return await self.session.get(User, user_id)

    async def lock_row(self, user_id: uuid.UUID, *, share: bool = False) -> None:
        """Lock the account's row until the transaction ends (``FOR SHARE`` when ``share``,
        else ``FOR NO KEY UPDATE``), leaving any loaded ``User`` and its pending changes as
        they are."""
        query = select(col(User.id)).where(col(User.id) == user_id)
        await self.session.execute(query.with_for_update(read=share, key_share=not share))

    async def get_locked(self, user_id: uuid.UUID) -> User | None:
        """The account re-read from the database and locked (``FOR NO KEY UPDATE``, the lock
        an update of the row takes) until the transaction ends."""
        query = select(User).where(col(User.id) == user_id).with_for_update(key_share=True)
        query = query.execution_options(populate_existing=True)
        return (await self.session.scalars(query)).first()

    async def lock_org_rows(self, org_id: uuid.UUID) -> None:
        """Lock the rows of every account of the organization (``FOR NO KEY UPDATE``, in id
        order) until the transaction ends."""
        query = select(col(User.id)).where(col(User.org_id) == org_id).order_by(col(User.id))
        await self.session.execute(query.with_for_update(key_share=True))

    async def get_with_organization(
        self, user_id: uuid.UUID
    ) -> tuple[User, Organization | None] | None:
        """The user and its organization (None for an operator)."""
        row = (
            await self.session.execute(
                select(User, Organization)
                .outerjoin(Organization, col(Organization.id) == col(User.org_id))
                .where(User.id == user_id)
            )
        ).first()
        return None if row is None else (row[0], row[1])

    async def find_by_email(self, email: str) -> User | None:
        query = select(User).where(func.lower(col(User.email)) == normalize_email(email))
        return (await self.session.scalars(query)).first()

    async def insert(self, user: User) -> bool:
        """Flush a new user in a savepoint; False when a concurrent insert took its email."""
        try:
            async with self.session.begin_nested():
                self.session.add(user)
                await self.session.flush()
        except IntegrityError:
            return False
        return True

    async def count_for_org(self, org_id: uuid.UUID) -> int:
        query = select(func.count()).select_from(User).where(col(User.org_id) == org_id)
        return int(await self.session.scalar(query) or 0)

    async def count_active_for_org(self, org_id: uuid.UUID) -> int:
        """Members who can log in or still accept their invitation (not deactivated)."""
        query = (
            select(func.count())
            .select_from(User)
            .where(col(User.org_id) == org_id, col(User.is_active).is_(True))
        )
        return int(await self.session.scalar(query) or 0)

    async def count_other_owners_who_log_in(self, user: User) -> int:
        """Active owners of the user's organization besides the user who can log in: an
        invitation not yet accepted makes no owner."""
        query = (
            select(func.count())
            .select_from(User)
            .where(
                User.org_id == user.org_id,
                User.role == OrgRole.OWNER,
                col(User.is_active).is_(True),
                col(User.password_hash).is_not(None) | col(User.sso_subject).is_not(None),
                User.id != user.id,
            )
        )
        return int(await self.session.scalar(query) or 0)

    async def page(
        self, query: SelectOfScalar[User], filters: paging.Listing
    ) -> paging.PageResult[User]:
        """A keyset page of ``query`` (members or operators) by the filters' sort."""
        return await paging.sorted_page(self.session, query, User, filters)

    async def page_members(self, filters: UserFilters) -> paging.PageResult[User]:
        """Organization members (of one organization or all, or of those whose name contains
        ``org_name``), a keyset page by the filters' sort."""
        query = select(User).where(col(User.org_id).is_not(None))
        if filters.org_id is not None:
            query = query.where(User.org_id == filters.org_id)
        if filters.org_name:
            query = query.where(col(User.org_id).in_(org_repository.ids_named(filters.org_name)))
        if filters.role is not None:
            query = query.where(User.role == filters.role)
        query = searched(query, filters.q, filters.is_active)
        return await self.page(query, filters)
