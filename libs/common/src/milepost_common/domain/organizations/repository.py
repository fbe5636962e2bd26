"""Statements on ``organizations``. Found by name, for the other features' filters
(operators search by name, not by id): statement builders the other repositories embed."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select
from sqlmodel.sql.expression import SelectOfScalar

from milepost_common.domain.organizations.models import Organization


def ids_named(part: str) -> SelectOfScalar[uuid.UUID]:
    """The ids of the organizations whose name contains ``part`` (case-insensitively), as
    a subquery for ``org_id IN (...)``."""
    return select(col(Organization.id)).where(
        col(Organization.name).icontains(part, autoescape=True)
    )


def named_like(part: str, *, limit: int = 10) -> SelectOfScalar[str]:
    """Names containing ``part``, those starting with it first: suggestions for a search box."""
    name = col(Organization.name)
    return (
        select(name)
        .where(name.icontains(part, autoescape=True))
        .group_by(name)
        .order_by(name.istartswith(part, autoescape=True).desc(), name)
        .limit(limit)
    )


class OrganizationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, org_id: uuid.UUID) -> Organization | None:
        return await self.session.get(Organization, org_id)
