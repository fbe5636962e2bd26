"""Operator-side webhook functions: an organization's endpoints, list deliveries, put a dead
one back in the queue.

Delivering is the worker's (``webhooks/delivery.py``); a retry only makes the delivery
due again in the database, so the worker's sweep finds it even if the task sent after the
commit is lost.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain import paging
from milepost_common.domain.audit import service as audit
from milepost_common.domain.base import get_by_id
from milepost_common.domain.organizations import repository as org_repository
from milepost_common.domain.principals import Principal
from milepost_common.domain.webhooks.admin_schemas import DeliveryFilters, DeliverySort
from milepost_common.domain.webhooks.models import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
)
from milepost_common.errors import Conflict, NotFound


class DeliveryNotFound(NotFound):
    default_message = "Webhook delivery not found."


class DeliveryNotDead(Conflict):
    default_message = "Only a dead delivery can be retried."


async def get_delivery(
    session: AsyncSession, delivery_id: uuid.UUID, *, for_update: bool = False
) -> WebhookDelivery:
    """Raises DeliveryNotFound."""
    return await get_by_id(
        session, WebhookDelivery, delivery_id, DeliveryNotFound, for_update=for_update
    )


async def list_deliveries(
    session: AsyncSession, filters: DeliveryFilters
) -> paging.PageResult[WebhookDelivery]:
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
    paged = paging.keyset(
        query,
        col(WebhookDelivery.created_at),
        col(WebhookDelivery.id),
        limit=filters.limit,
        cursor=filters.cursor,
        descending=filters.sort is DeliverySort.CREATED_AT_DESC,
    )
    rows = (await session.scalars(paged)).all()
    return paging.page_of(rows, filters.limit, lambda d: (d.created_at, d.id))


@dataclass(frozen=True, slots=True)
class EndpointView:
    """An endpoint as operators see it: its receiver's address without the query (which
    may carry the receiver's own token)."""

    endpoint: WebhookEndpoint
    address: str


async def list_org_endpoints(session: AsyncSession, org_id: uuid.UUID) -> list[EndpointView]:
    """The organization's webhook endpoints, newest first."""
    rows = await session.scalars(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.org_id == org_id)
        .order_by(col(WebhookEndpoint.created_at).desc(), col(WebhookEndpoint.id))
    )
    return [EndpointView(e, _address(e.url)) for e in rows.all()]


def _address(url: str) -> str:
    parts = urlsplit(url)  # no credentials: refused at creation
    shown = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return f"{shown}?…" if parts.query else shown


async def retry_delivery(
    session: AsyncSession, actor: Principal, delivery: WebhookDelivery
) -> WebhookDelivery:
    """Make a dead delivery pending and due now, with a fresh attempt budget; the caller
    sends ``webhooks.deliver`` after the commit. Raises DeliveryNotDead (409). Audited."""
    if delivery.status != DeliveryStatus.DEAD:
        raise DeliveryNotDead()
    delivery.status = DeliveryStatus.PENDING
    delivery.next_attempt_at = datetime.now(UTC)
    previous_attempts = delivery.attempts
    delivery.attempts = 0
    session.add(delivery)
    await session.flush()
    await audit.record(
        session,
        actor,
        "webhook_deliveries.retry",
        target_type="webhook_delivery",
        target_id=delivery.id,
        org_id=delivery.org_id,
        diff={"status": ["dead", "pending"], "attempts": [previous_attempts, 0]},
    )
    return delivery
