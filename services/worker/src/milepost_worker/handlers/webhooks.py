"""Webhook attempts and the sweep that finds due ones (retries live in the database).

Log lines name the delivery, its endpoint and organization, never the receiver's URL (its
path and query often carry the receiver's own token).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import orjson

from milepost_common.db import unit_of_work
from milepost_common.domain.webhooks import delivery as webhook_delivery
from milepost_common.domain.webhooks import sending
from milepost_common.domain.webhooks.models import DeliveryStatus
from milepost_common.logging import get_logger
from milepost_worker import metrics
from milepost_worker.runtime import WorkerContext
from milepost_worker.slots import Slots
from milepost_worker.timeutil import utcnow

log = get_logger("milepost.worker.webhooks")

IN_FLIGHT_PREFIX = "milepost:webhooks:in-flight:"
EXHAUSTED = "every attempt was used (the last one was interrupted)"


@dataclass(frozen=True, slots=True)
class Outcome:
    """``status`` None: nothing was sent (not due, taken by another, or ``deferred`` because
    the organization is at its in-flight limit: it stays due). ``next_ids``: the
    organization's longest-waiting due deliveries, to send now that this one freed its slot
    (as many as its limit: another finishing delivery may pick the same ones, and whichever
    task claims one first sends it)."""

    status: DeliveryStatus | None
    deferred: bool = False
    next_ids: tuple[uuid.UUID, ...] = ()


def in_flight_slots(ctx: WorkerContext) -> Slots:
    return Slots(
        ctx.cache,
        IN_FLIGHT_PREFIX,
        ctx.settings.webhooks.max_in_flight_per_org,
        ctx.settings.worker.webhook_claim_s,
    )


async def deliver(ctx: WorkerContext, delivery_id: uuid.UUID) -> Outcome:
    """One attempt of a due pending delivery, within its organization's in-flight limit.

    The claim counts the attempt and moves ``next_attempt_at`` past the task's time limits
    first, so a sweep and a direct send never post the same attempt twice and an attempt
    cut short still counts; the outcome (and the next attempt's time) is recorded after, in
    a transaction of its own, once the attempt's deadline has ended it.
    """
    if ctx.box is None:  # `milepost-worker -Q webhooks` refuses to start without the key
        raise RuntimeError("MILEPOST_AUTH__SECRETS_KEY is not set: deliveries cannot be signed")
    w = ctx.settings.worker
    async with unit_of_work(ctx.db) as session:
        due = await webhook_delivery.find_due(session, delivery_id, utcnow())
        if due is None:
            return Outcome(None)
        if due.attempts >= w.webhook_max_attempts:
            await webhook_delivery.give_up(session, delivery_id, EXHAUSTED)
            return Outcome(DeliveryStatus.DEAD)
    slots = in_flight_slots(ctx)
    # This task's own holder: a duplicate task of the delivery (the sweep's, a finishing
    # task's next_ids) must not release the slot of the attempt in flight.
    org_key, holder = str(due.org_id), f"{delivery_id}:{uuid.uuid4().hex}"
    if not await slots.acquire(org_key, holder):
        log.info("webhook_deferred", delivery_id=str(delivery_id), org_id=org_key)
        return Outcome(None, deferred=True)
    try:
        status = await _attempt(ctx, delivery_id)
    finally:
        await slots.release(org_key, holder)
    if status is None:
        return Outcome(None)
    async with unit_of_work(ctx.db) as session:
        next_ids = await webhook_delivery.due_for_org(
            session, due.org_id, utcnow(), ctx.settings.webhooks.max_in_flight_per_org
        )
    return Outcome(status, next_ids=tuple(next_ids))


async def _attempt(ctx: WorkerContext, delivery_id: uuid.UUID) -> DeliveryStatus | None:
    w = ctx.settings.worker
    async with unit_of_work(ctx.db) as session:
        claimed = await webhook_delivery.claim_delivery(
            session, delivery_id, utcnow(), w.webhook_claim_s
        )
        if claimed is None:
            return None
        delivery, endpoint = claimed
        if not endpoint.enabled:
            await webhook_delivery.give_up(session, delivery.id, "endpoint disabled")
            return DeliveryStatus.DEAD
    limits = ctx.settings.webhooks
    assert ctx.box is not None  # noqa: S101 - checked by deliver()
    sent = await sending.send_signed(
        ctx.http,
        endpoint.url,
        ctx.box.decrypt(endpoint.secret_encrypted),
        delivery.event_id,
        orjson.dumps(delivery.payload),
        allow_private=ctx.settings.webhooks.allow_private,
        timeout_s=limits.timeout_s,
        max_response_bytes=limits.max_response_bytes,
    )
    attempt = webhook_delivery.Attempt(utcnow(), sent.status_code, sent.error, sent.duration_ms)
    async with unit_of_work(ctx.db) as session:
        status = await webhook_delivery.record_attempt(
            session,
            delivery,
            endpoint,
            attempt,
            max_attempts=w.webhook_max_attempts,
            backoff_base_s=w.webhook_backoff_base_s,
            backoff_max_s=w.webhook_backoff_max_s,
        )
    metrics.WEBHOOK_ATTEMPTS.labels("ok" if attempt.succeeded else "failed").inc()
    log.info(
        "webhook_attempt",
        delivery_id=str(delivery.id),
        endpoint_id=str(endpoint.id),
        org_id=str(delivery.org_id),
        attempt=delivery.attempts,
        status_code=sent.status_code,
        error=sent.error,
        outcome=str(status),
    )
    return status


async def due_deliveries(ctx: WorkerContext) -> list[uuid.UUID]:
    """Pending deliveries whose next attempt is due, at most the in-flight limit of each
    organization (the sweep sends a task for each)."""
    async with unit_of_work(ctx.db) as session:
        return await webhook_delivery.list_due_deliveries(
            session, utcnow(), per_org=ctx.settings.webhooks.max_in_flight_per_org
        )
