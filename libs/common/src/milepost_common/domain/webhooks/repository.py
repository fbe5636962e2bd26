"""Statements on ``webhook_endpoints`` and ``webhook_deliveries``."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain import paging
from milepost_common.domain.base import find_by_id
from milepost_common.domain.organizations import repository as org_repository
from milepost_common.domain.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from milepost_common.domain.webhooks.schemas import DeliveryFilters

_ROWS_PER_INSERT = 1000
# Retention deletes only these: a pending delivery (in flight or waiting for its next attempt)
# is still work to do, whatever its age.
FINISHED = (DeliveryStatus.SUCCEEDED, DeliveryStatus.DEAD)


class WebhookEndpointRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_for_org(
        self, org_id: uuid.UUID, endpoint_id: uuid.UUID
    ) -> WebhookEndpoint | None:
        return await find_by_id(self.session, WebhookEndpoint, endpoint_id, org_id=org_id)

    async def page_for_org(
        self, org_id: uuid.UUID, page: paging.PageRequest
    ) -> paging.PageResult[WebhookEndpoint]:
        return await paging.org_page(self.session, WebhookEndpoint, org_id, page)

    async def list_for_org_newest_first(self, org_id: uuid.UUID) -> list[WebhookEndpoint]:
        rows = await self.session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.org_id == org_id)
            .order_by(col(WebhookEndpoint.created_at).desc(), col(WebhookEndpoint.id))
        )
        return list(rows.all())

    async def list_enabled_for_orgs(self, org_ids: Collection[uuid.UUID]) -> list[WebhookEndpoint]:
        return list(
            (
                await self.session.execute(
                    select(WebhookEndpoint).where(
                        col(WebhookEndpoint.org_id).in_(org_ids),
                        col(WebhookEndpoint.enabled).is_(True),
                    )
                )
            ).scalars()
        )

    async def disable(self, endpoint_id: uuid.UUID, reason: str, at: datetime) -> None:
        await self.session.execute(
            update(WebhookEndpoint)
            .where(col(WebhookEndpoint.id) == endpoint_id)
            .values(enabled=False, disabled_reason=reason, updated_at=at)
        )


class WebhookDeliveryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(
        self, delivery_id: uuid.UUID, *, for_update: bool = False
    ) -> WebhookDelivery | None:
        return await find_by_id(self.session, WebhookDelivery, delivery_id, for_update=for_update)

    async def page_for_endpoint(
        self,
        endpoint: WebhookEndpoint,
        page: paging.PageRequest,
        *,
        status: DeliveryStatus | None = None,
    ) -> paging.PageResult[WebhookDelivery]:
        """A keyset page of an endpoint's deliveries by the page's sort, else ``created_at``."""
        query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
        if status is not None:
            query = query.where(WebhookDelivery.status == status)
        return await paging.org_page(
            self.session, WebhookDelivery, endpoint.org_id, page, narrowed=query
        )

    async def page(self, filters: DeliveryFilters) -> paging.PageResult[WebhookDelivery]:
        """A keyset page by creation time, filtered by organization, endpoint, status, type."""
        query = select(WebhookDelivery)
        if filters.org_id is not None:
            query = query.where(WebhookDelivery.org_id == filters.org_id)
        if filters.org_name:
            org_ids = org_repository.ids_named(filters.org_name)
            query = query.where(col(WebhookDelivery.org_id).in_(org_ids))
        if filters.endpoint_id is not None:
            query = query.where(WebhookDelivery.endpoint_id == filters.endpoint_id)
        if filters.status is not None:
            query = query.where(WebhookDelivery.status == filters.status)
        if filters.event_type:
            query = query.where(WebhookDelivery.event_type == filters.event_type)
        query = paging.time_window(
            query, col(WebhookDelivery.created_at), paging.Window(filters.from_, filters.to)
        )
        return await paging.sorted_page(self.session, query, WebhookDelivery, filters)

    async def insert_new(self, rows: list[dict[str, Any]]) -> list[uuid.UUID]:
        """Insert the deliveries, skipping those already written for their endpoint and event;
        the new ones' ids."""
        created: list[uuid.UUID] = []
        for start in range(0, len(rows), _ROWS_PER_INSERT):
            inserted = await self.session.execute(
                insert(WebhookDelivery)
                .values(rows[start : start + _ROWS_PER_INSERT])
                .on_conflict_do_nothing(constraint="uq_webhook_deliveries_endpoint_event")
                .returning(col(WebhookDelivery.id))
            )
            created.extend(inserted.scalars())
        return created

    async def delete_expired(self, org_id: uuid.UUID, cutoff: datetime, *, limit: int) -> int:
        """Delete up to ``limit`` of the organization's finished deliveries created before
        ``cutoff`` (by the ``(org_id, created_at)`` index; rows another transaction holds, an
        operator's retry, are skipped until the next run); how many went."""
        expired = (
            select(col(WebhookDelivery.id))
            .where(
                col(WebhookDelivery.org_id) == org_id,
                col(WebhookDelivery.created_at) < cutoff,
                col(WebhookDelivery.status).in_(FINISHED),
            )
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        result = await self.session.execute(
            delete(WebhookDelivery).where(col(WebhookDelivery.id).in_(expired.scalar_subquery()))
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def find_due(self, delivery_id: uuid.UUID, now: datetime) -> tuple[uuid.UUID, int] | None:
        """``(org_id, attempts)`` of the delivery if it is pending and due."""
        row = (
            await self.session.execute(
                select(col(WebhookDelivery.org_id), col(WebhookDelivery.attempts)).where(
                    col(WebhookDelivery.id) == delivery_id,
                    col(WebhookDelivery.status) == DeliveryStatus.PENDING,
                    col(WebhookDelivery.next_attempt_at) <= now,
                )
            )
        ).first()
        return (row[0], row[1]) if row else None

    async def take_for_attempt(
        self, delivery_id: uuid.UUID, now: datetime, hidden_until: datetime
    ) -> bool:
        """Count one more attempt of a due pending delivery and hide it until
        ``hidden_until``; False when it is not (or no longer) due."""
        claimed = (
            await self.session.execute(
                update(WebhookDelivery)
                .where(
                    col(WebhookDelivery.id) == delivery_id,
                    col(WebhookDelivery.status) == DeliveryStatus.PENDING,
                    col(WebhookDelivery.next_attempt_at) <= now,
                )
                .values(
                    next_attempt_at=hidden_until,
                    attempts=col(WebhookDelivery.attempts) + 1,
                )
                .returning(col(WebhookDelivery.id))
            )
        ).scalar_one_or_none()
        return claimed is not None

    async def get_with_endpoint(
        self, delivery_id: uuid.UUID
    ) -> tuple[WebhookDelivery, WebhookEndpoint] | None:
        """The delivery, read afresh, with its endpoint."""
        row = (
            await self.session.execute(
                select(WebhookDelivery, WebhookEndpoint)
                .join(WebhookEndpoint, col(WebhookEndpoint.id) == col(WebhookDelivery.endpoint_id))
                .where(col(WebhookDelivery.id) == delivery_id)
                .execution_options(populate_existing=True)
            )
        ).first()
        return None if row is None else (row[0], row[1])

    async def update(self, delivery_id: uuid.UUID, **values: Any) -> None:
        """Set columns of one delivery (the session's copy is synchronized by the ORM)."""
        await self.session.execute(
            update(WebhookDelivery).where(col(WebhookDelivery.id) == delivery_id).values(**values)
        )

    async def give_up(self, delivery_id: uuid.UUID, reason: str) -> None:
        """Dead without an attempt, if still pending."""
        await self.session.execute(
            update(WebhookDelivery)
            .where(
                col(WebhookDelivery.id) == delivery_id,
                col(WebhookDelivery.status) == DeliveryStatus.PENDING,
            )
            .values(status=DeliveryStatus.DEAD, next_attempt_at=None, last_error=reason)
        )

    async def list_due(self, now: datetime, *, per_org: int, limit: int) -> list[uuid.UUID]:
        """The longest-waiting due deliveries, at most ``per_org`` of each organization."""
        ranked = (
            select(
                col(WebhookDelivery.id).label("id"),
                col(WebhookDelivery.next_attempt_at).label("due_at"),
                func.row_number()
                .over(
                    partition_by=col(WebhookDelivery.org_id),
                    order_by=col(WebhookDelivery.next_attempt_at),
                )
                .label("rank"),
            )
            .where(
                col(WebhookDelivery.status) == DeliveryStatus.PENDING,
                col(WebhookDelivery.next_attempt_at) <= now,
            )
            .subquery()
        )
        rows = await self.session.execute(
            select(ranked.c.id)
            .where(ranked.c.rank <= per_org)
            .order_by(ranked.c.due_at)
            .limit(limit)
        )
        return list(rows.scalars())

    async def due_for_org(self, org_id: uuid.UUID, now: datetime, limit: int) -> list[uuid.UUID]:
        """The organization's longest-waiting due deliveries."""
        rows = await self.session.execute(
            select(col(WebhookDelivery.id))
            .where(
                col(WebhookDelivery.org_id) == org_id,
                col(WebhookDelivery.status) == DeliveryStatus.PENDING,
                col(WebhookDelivery.next_attempt_at) <= now,
            )
            .order_by(col(WebhookDelivery.next_attempt_at))
            .limit(limit)
        )
        return list(rows.scalars())
