"""Webhook attempts and the sweep that finds due ones (retries live in the database)."""

from __future__ import annotations

import time
import uuid

import httpx
import orjson

from milepost_common.db import unit_of_work
from milepost_common.domain.webhooks import delivery as webhook_delivery
from milepost_common.domain.webhooks import service as webhook_service
from milepost_common.domain.webhooks.models import DeliveryStatus
from milepost_common.logging import get_logger
from milepost_worker import metrics
from milepost_worker.runtime import WorkerContext
from milepost_worker.timeutil import utcnow

log = get_logger("milepost.worker.webhooks")


async def deliver(ctx: WorkerContext, delivery_id: uuid.UUID) -> DeliveryStatus | None:
    """One attempt of a due pending delivery; None when it is not due (or taken by another).

    The claim moves ``next_attempt_at`` ahead first, so a sweep and a direct send never post
    the same attempt twice; the outcome (and the next attempt's time) is recorded after.
    """
    w = ctx.settings.worker
    async with unit_of_work(ctx.db) as session:
        claimed = await webhook_delivery.claim_delivery(
            session, delivery_id, utcnow(), w.webhook_claim_s
        )
        if claimed is None:
            return None
        delivery, endpoint = claimed
        if not endpoint.enabled:
            await webhook_delivery.give_up(session, delivery, "endpoint disabled")
            return DeliveryStatus.DEAD
    body = orjson.dumps(delivery.payload)
    started = time.perf_counter()
    status_code: int | None = None
    error: str | None = None
    try:
        response = await webhook_service.post_signed(
            ctx.http,
            endpoint.url,
            ctx.box.decrypt(endpoint.secret_encrypted),
            delivery.event_id,
            body,
            allow_private=w.webhook_allow_private,
            timeout_s=w.webhook_timeout_s,
        )
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"receiver answered {status_code}"
    except webhook_service.AddressRefused as exc:
        error = f"refused: {exc}"
    except (httpx.HTTPError, OSError) as exc:
        error = f"{type(exc).__name__}: could not deliver"
    attempt = webhook_delivery.Attempt(
        utcnow(), status_code, error, (time.perf_counter() - started) * 1000
    )
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
        status_code=status_code,
        outcome=str(status),
        attempt=delivery.attempts + 1,
    )
    return status


async def due_deliveries(ctx: WorkerContext) -> list[uuid.UUID]:
    """Pending deliveries whose next attempt is due (the sweep sends a task for each)."""
    async with unit_of_work(ctx.db) as session:
        return await webhook_delivery.list_due_deliveries(session, utcnow())
