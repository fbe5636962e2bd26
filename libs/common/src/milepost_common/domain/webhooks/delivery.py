"""Webhook deliveries: written ``pending`` with their cause, attempted by the worker, retried
with exponential backoff and jitter scheduled in the database (``next_attempt_at``), every
attempt appended to ``attempt_log`` (counted when it is claimed, its outcome filled in after);
dead after the last attempt or on ``410 Gone`` (which also disables the endpoint). Endpoint
CRUD lives in ``service.py``.

What is sent is an ``events.Event`` (``alert.created``, ``trip.started``, …): one delivery per
event and subscribed, enabled endpoint, unique per ``(endpoint, event id)``. Event ids are
stable (see ``events.py``), so writing the same event again is a no-op. Sending itself
(address check at connect time, signature, deadline) is ``sending.send_signed``.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.webhooks.events import Event
from milepost_common.domain.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from milepost_common.domain.webhooks.repository import (
    WebhookDeliveryRepository,
    WebhookEndpointRepository,
)

GONE = 410
INTERRUPTED = "interrupted: no outcome was recorded"


async def create_deliveries(
    session: AsyncSession, events: Sequence[Event], now: datetime
) -> list[uuid.UUID]:
    """One ``pending`` delivery (due now) per event and enabled endpoint of its organization
    subscribed to its type; an event already written for an endpoint is skipped (at most one
    delivery per endpoint and event id). Returns the new deliveries' ids."""
    if not events:
        return []
    endpoints = await WebhookEndpointRepository(session).list_enabled_for_orgs(
        {e.org_id for e in events}
    )
    rows: list[dict[str, Any]] = [
        {
            "id": uuid.uuid4(),
            "org_id": event.org_id,
            "endpoint_id": endpoint.id,
            "event_id": event.id,
            "event_type": event.type.value,
            "payload": event.payload(now),
            "status": DeliveryStatus.PENDING.value,
            "attempts": 0,
            "next_attempt_at": now,
            "attempt_log": [],
            "created_at": now,
        }
        for event in events
        for endpoint in endpoints
        if endpoint.org_id == event.org_id and event.type.value in endpoint.event_types
    ]
    return await WebhookDeliveryRepository(session).insert_new(rows)


@dataclass(frozen=True, slots=True)
class Due:
    """A pending delivery whose next attempt is due."""

    org_id: uuid.UUID
    attempts: int


async def find_due(session: AsyncSession, delivery_id: uuid.UUID, now: datetime) -> Due | None:
    """The delivery's organization and attempts so far, if it is pending and due."""
    row = await WebhookDeliveryRepository(session).find_due(delivery_id, now)
    return Due(*row) if row else None


def _log_entry(number: int, attempt: Attempt | None, at: datetime) -> dict[str, Any]:
    return {
        "attempt": number,
        "at": at.isoformat().replace("+00:00", "Z"),
        "status_code": attempt.status_code if attempt else None,
        "error": attempt.error if attempt else INTERRUPTED,
        "duration_ms": round(attempt.duration_ms, 1) if attempt else None,
    }


async def claim_delivery(
    session: AsyncSession, delivery_id: uuid.UUID, now: datetime, lease_s: float
) -> tuple[WebhookDelivery, WebhookEndpoint] | None:
    """Take a due pending delivery for one attempt, hidden from others for ``lease_s``.

    The attempt is counted here, before anything is sent, with an ``interrupted`` entry
    that ``record_attempt`` replaces: an attempt cut short by a time limit, a shutdown or a
    crash still counts, so a delivery can never be re-sent forever. A delivery whose endpoint
    is disabled (a 410 from another of its deliveries) is returned uncounted, to give up.
    """
    deliveries = WebhookDeliveryRepository(session)
    if not await deliveries.take_for_attempt(delivery_id, now, now + timedelta(seconds=lease_s)):
        return None
    row = await deliveries.get_with_endpoint(delivery_id)
    if row is None:
        return None
    delivery, endpoint = row
    if not endpoint.enabled:
        # Nothing will be sent (the caller gives it up): no attempt to count or show.
        await deliveries.update(delivery_id, attempts=delivery.attempts - 1)
        return delivery, endpoint
    # The session's copy of the delivery gets the placeholder too (synchronized by the ORM).
    await deliveries.update(
        delivery_id,
        attempt_log=[*delivery.attempt_log, _log_entry(delivery.attempts, None, now)],
    )
    return delivery, endpoint


@dataclass(frozen=True, slots=True)
class Attempt:
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def backoff_s(
    attempts: int, base_s: float, cap_s: float, rnd: random.Random | None = None
) -> float:
    """Exponential (base x 2^(n-1), capped) with full jitter over its upper half."""
    ceiling: float = min(cap_s, base_s * 2.0 ** max(0, attempts - 1))
    draw: float = (rnd or random).random()
    return ceiling * (0.5 + 0.5 * draw)


async def record_attempt(
    session: AsyncSession,
    delivery: WebhookDelivery,
    endpoint: WebhookEndpoint,
    attempt: Attempt,
    *,
    max_attempts: int,
    backoff_base_s: float,
    backoff_max_s: float,
) -> DeliveryStatus:
    """Put the outcome in place of the claimed attempt's placeholder, then succeed, schedule
    the next attempt, or give up. ``delivery`` is as ``claim_delivery`` returned it."""
    attempts = delivery.attempts
    log = list(delivery.attempt_log)
    if log and log[-1].get("attempt") == attempts and log[-1].get("error") == INTERRUPTED:
        log.pop()  # this attempt's placeholder
    values: dict[str, Any] = {
        "attempt_log": [*log, _log_entry(attempts, attempt, attempt.at)],
        "last_response_code": attempt.status_code,
        "last_error": attempt.error,
    }
    if attempt.succeeded:
        values.update(
            status=DeliveryStatus.SUCCEEDED, delivered_at=attempt.at, next_attempt_at=None
        )
    elif attempt.status_code == GONE:
        values.update(status=DeliveryStatus.DEAD, next_attempt_at=None)
        await WebhookEndpointRepository(session).disable(
            endpoint.id, "receiver answered 410 Gone", attempt.at
        )
    elif attempts >= max_attempts:
        values.update(status=DeliveryStatus.DEAD, next_attempt_at=None)
    else:
        delay = backoff_s(attempts, backoff_base_s, backoff_max_s)
        values.update(next_attempt_at=attempt.at + timedelta(seconds=delay))
    await WebhookDeliveryRepository(session).update(delivery.id, **values)
    return DeliveryStatus(values.get("status", DeliveryStatus.PENDING))


async def give_up(session: AsyncSession, delivery_id: uuid.UUID, reason: str) -> None:
    """Dead without an attempt (endpoint disabled or removed, every attempt used)."""
    await WebhookDeliveryRepository(session).give_up(delivery_id, reason)


async def list_due_deliveries(
    session: AsyncSession, now: datetime, *, per_org: int, limit: int = 500
) -> list[uuid.UUID]:
    """The longest-waiting due deliveries, at most ``per_org`` of each organization: one
    organization's backlog never fills the sweep and starves the others' retries."""
    return await WebhookDeliveryRepository(session).list_due(now, per_org=per_org, limit=limit)


async def due_for_org(
    session: AsyncSession, org_id: uuid.UUID, now: datetime, limit: int
) -> list[uuid.UUID]:
    """The organization's longest-waiting due deliveries (sent when one of its slots frees)."""
    return await WebhookDeliveryRepository(session).due_for_org(org_id, now, limit)
