"""Statements on ``organizations``, and what deleting and exporting one reads of its other
tables. ``ids_named`` and ``named_like`` find organizations by name for the other features'
filters (operators search by name, not by id): statement builders the other repositories
embed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Collection
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel, col, select
from sqlmodel.sql.expression import SelectOfScalar

from milepost_common.domain import paging
from milepost_common.domain.audit.models import AuditEntry
from milepost_common.domain.base import find_by_id
from milepost_common.domain.devices.models import Device
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.organizations.schemas import OrganizationFilters
from milepost_common.domain.positions.models import Position

# Rows of another organization that refer to a device (deleting the device would cascade
# into them, or orphan the positions, which carry no foreign key).
_HISTORY_ELSEWHERE = text(
    """
    SELECT d FROM unnest(CAST(:ids AS uuid[])) AS d
    WHERE EXISTS (SELECT 1 FROM positions WHERE device_id = d AND org_id <> :org)
       OR EXISTS (SELECT 1 FROM trips WHERE device_id = d AND org_id <> :org)
       OR EXISTS (SELECT 1 FROM stops WHERE device_id = d AND org_id <> :org)
       OR EXISTS (SELECT 1 FROM alerts WHERE device_id = d AND org_id <> :org)
    ORDER BY d
    """
)

# Not over a retention change made meanwhile (which cleared the watermark).
_RETENTION_APPLIED = text(
    "UPDATE organizations SET retention_applied_until = :until WHERE id = :org"
    " AND retention_days = :days AND retention_applied_until IS NOT DISTINCT"
    " FROM :since_was"
)


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

    async def get(self, org_id: uuid.UUID, *, for_update: bool = False) -> Organization | None:
        return await find_by_id(self.session, Organization, org_id, for_update=for_update)

    async def get_many(self, org_ids: Collection[uuid.UUID]) -> list[Organization]:
        if not org_ids:
            return []
        query = select(Organization).where(col(Organization.id).in_(list(org_ids)))
        return list((await self.session.scalars(query)).all())

    async def retentions(self) -> list[tuple[uuid.UUID, int, datetime | None]]:
        """``(id, retention_days, retention_applied_until)`` of every organization."""
        query = select(
            col(Organization.id),
            col(Organization.retention_days),
            col(Organization.retention_applied_until),
        )
        return [(org_id, days, until) for org_id, days, until in await self.session.execute(query)]

    async def set_retention_applied(
        self, org_id: uuid.UUID, until: datetime, days: int, since_was: datetime | None
    ) -> None:
        """The watermark moves to ``until`` unless the retention changed since
        ``(days, since_was)`` was read."""
        await self.session.execute(
            _RETENTION_APPLIED,
            {"org": org_id, "until": until, "days": days, "since_was": since_was},
        )

    async def names_like(self, part: str, *, limit: int) -> list[str]:
        return list((await self.session.scalars(named_like(part, limit=limit))).all())

    async def page(self, filters: OrganizationFilters) -> paging.PageResult[Organization]:
        """A keyset page by the filters' sort; ``q`` matches part of the name."""
        query = select(Organization)
        if filters.q:
            query = query.where(col(Organization.name).icontains(filters.q, autoescape=True))
        if filters.suspended is not None:
            suspended_at = col(Organization.suspended_at)
            query = query.where(
                suspended_at.is_not(None) if filters.suspended else suspended_at.is_(None)
            )
        return await paging.sorted_page(self.session, query, Organization, filters)

    async def device_ids(self, org_id: uuid.UUID) -> set[uuid.UUID]:
        """The devices it holds now."""
        query = select(col(Device.id)).where(Device.org_id == org_id)
        return set((await self.session.scalars(query)).all())

    async def devices(self, org_id: uuid.UUID) -> list[Device]:
        """The devices it holds now."""
        return list(
            (await self.session.scalars(select(Device).where(col(Device.org_id) == org_id))).all()
        )

    async def count_devices(self, org_id: uuid.UUID) -> int:
        query = select(func.count()).select_from(Device).where(Device.org_id == org_id)
        return int(await self.session.scalar(query) or 0)

    async def audited_targets(
        self, action: str, org_id: uuid.UUID, *, of_org: bool = True
    ) -> set[uuid.UUID]:
        """The targets of the audit log's ``action`` entries of the organization (of every
        other organization when not ``of_org``)."""
        where = AuditEntry.org_id == org_id if of_org else AuditEntry.org_id != org_id
        query = select(col(AuditEntry.target_id)).where(AuditEntry.action == action, where)
        return {uuid.UUID(raw) for raw in (await self.session.scalars(query)).all() if raw}

    async def devices_with_history_elsewhere(
        self, org_id: uuid.UUID, candidates: list[uuid.UUID]
    ) -> list[uuid.UUID]:
        """Those of ``candidates`` with rows of another organization (positions, trips,
        stops, alerts)."""
        if not candidates:
            return []
        rows = await self.session.execute(_HISTORY_ELSEWHERE, {"ids": candidates, "org": org_id})
        return [row[0] for row in rows]

    async def delete_positions(self, org_id: uuid.UUID, device_ids: list[uuid.UUID]) -> int:
        """Its positions of these devices; how many went. Positions carry no foreign key
        (partitioned): deleted through the primary key's device column, 500 devices a
        statement, so every partition uses its index."""
        removed = 0
        for start in range(0, len(device_ids), 500):
            result = await self.session.execute(
                delete(Position).where(
                    col(Position.device_id).in_(device_ids[start : start + 500]),
                    col(Position.org_id) == org_id,
                )
            )
            removed += int(getattr(result, "rowcount", 0) or 0)
        return removed

    async def stream_rows(
        self,
        model: type[SQLModel],
        org_column: Any,
        org_id: uuid.UUID,
        order_by: tuple[Any, ...],
        *,
        chunk_rows: int,
    ) -> AsyncIterator[Any]:
        """Every row of ``model`` of the organization in ``order_by``, read in chunks with a
        server-side cursor."""
        query = (
            select(model)
            .where(org_column == org_id)
            .order_by(*order_by)
            .execution_options(yield_per=chunk_rows)
        )
        rows = await self.session.stream_scalars(query)
        async for row in rows:
            yield row

    async def page_rows(
        self,
        model: type[SQLModel],
        org_column: Any,
        org_id: uuid.UUID,
        order_by: tuple[Any, ...],
        *,
        page_rows: int,
    ) -> AsyncIterator[Any]:
        """``stream_rows`` for rows of megabytes, ``page_rows`` at a time, each page after the
        last row's ``order_by`` values (keyset): the driver's server-side cursor reads at least
        50 rows a fetch, whatever the chunk asked for."""
        after: list[Any] | None = None
        while True:
            query = select(model).where(org_column == org_id)
            if after is not None:
                query = query.where(tuple_(*order_by) > tuple_(*after))
            query = query.order_by(*order_by).limit(page_rows)
            rows = (await self.session.scalars(query)).all()
            for row in rows:
                yield row
            if len(rows) < page_rows:
                return
            after = [getattr(rows[-1], column.key) for column in order_by]
            del rows  # not held while the next page is read
