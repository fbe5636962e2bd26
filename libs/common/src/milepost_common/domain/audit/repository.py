"""Statements on ``audit_log`` (append-only: the database refuses UPDATE and DELETE)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain import paging
from milepost_common.domain.audit.models import AuditEntry
from milepost_common.domain.audit.schemas import AuditFilters
from milepost_common.domain.organizations import repository as org_repository


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def page(self, filters: AuditFilters) -> paging.PageResult[AuditEntry]:
        """A keyset page by ``occurred_at``; an ``action`` ending in a dot matches a feature."""
        query = select(AuditEntry)
        if filters.actor_id is not None:
            query = query.where(AuditEntry.actor_id == filters.actor_id)
        if filters.actor:
            query = query.where(
                col(AuditEntry.actor_label).icontains(filters.actor, autoescape=True)
            )
        if filters.org_id is not None:
            query = query.where(AuditEntry.org_id == filters.org_id)
        if filters.org_name:
            query = query.where(
                col(AuditEntry.org_id).in_(org_repository.ids_named(filters.org_name))
            )
        if filters.action:
            if filters.action.endswith("."):
                query = query.where(
                    col(AuditEntry.action).startswith(filters.action, autoescape=True)
                )
            else:
                query = query.where(AuditEntry.action == filters.action)
        if filters.target_type:
            query = query.where(AuditEntry.target_type == filters.target_type)
        if filters.target_id:
            query = query.where(AuditEntry.target_id == filters.target_id)
        query = paging.time_window(
            query, col(AuditEntry.occurred_at), paging.Window(filters.from_, filters.to)
        )
        return await paging.sorted_page(self.session, query, AuditEntry, filters)
