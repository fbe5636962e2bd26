"""``webhooks.deliver`` (one attempt) and ``webhooks.sweep`` (sends the due ones); both on the
``webhooks`` queue, served by a worker group of its own."""

from __future__ import annotations

import uuid

from milepost_common import tasks as names
from milepost_common.domain.webhooks.models import DeliveryStatus
from milepost_worker import metrics
from milepost_worker.celery_app import celery_app
from milepost_worker.handlers import webhooks
from milepost_worker.runtime import get_runtime
from milepost_worker.settings import get_settings
from milepost_worker.tasks import observed, send

_SOFT_LIMIT_S, _HARD_LIMIT_S = get_settings().webhook_task_limits_s


@celery_app.task(
    name=names.WEBHOOKS_DELIVER, soft_time_limit=_SOFT_LIMIT_S, time_limit=_HARD_LIMIT_S
)
def deliver(delivery_id: str) -> str | None:
    """One attempt if the delivery is due and its organization has a free slot; the next
    attempt is scheduled in the database, and the organization's due deliveries are sent
    again when this one frees its slot."""
    runtime = get_runtime()
    with observed(names.WEBHOOKS_DELIVER):
        outcome = runtime.run(webhooks.deliver(runtime.context, uuid.UUID(delivery_id)))
    if outcome.status == DeliveryStatus.DEAD:
        metrics.WEBHOOK_DELIVERIES_DEAD.inc()
    for next_id in outcome.next_ids:
        send(names.WEBHOOKS_DELIVER, str(next_id))
    if outcome.deferred:
        return "deferred"
    return str(outcome.status) if outcome.status is not None else None


@celery_app.task(name=names.WEBHOOKS_SWEEP)
def sweep() -> int:
    """Send a delivery task for every due pending delivery (retries, lost sends)."""
    runtime = get_runtime()
    with observed(names.WEBHOOKS_SWEEP):
        due = runtime.run(webhooks.due_deliveries(runtime.context))
    for delivery_id in due:
        send(names.WEBHOOKS_DELIVER, str(delivery_id))
    return len(due)
