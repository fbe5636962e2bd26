"""``webhooks.deliver`` (one attempt) and ``webhooks.sweep`` (sends the due ones)."""

from __future__ import annotations

import uuid

from milepost_common import tasks as names
from milepost_worker.celery_app import celery_app
from milepost_worker.handlers import webhooks
from milepost_worker.runtime import get_runtime
from milepost_worker.tasks import observed, send


@celery_app.task(name=names.WEBHOOKS_DELIVER)
def deliver(delivery_id: str) -> str | None:
    """One attempt if the delivery is due; the next one is scheduled in the database."""
    runtime = get_runtime()
    with observed(names.WEBHOOKS_DELIVER):
        status = runtime.run(webhooks.deliver(runtime.context, uuid.UUID(delivery_id)))
    return str(status) if status is not None else None


@celery_app.task(name=names.WEBHOOKS_SWEEP)
def sweep() -> int:
    """Send a delivery task for every due pending delivery (retries, lost sends)."""
    runtime = get_runtime()
    with observed(names.WEBHOOKS_SWEEP):
        due = runtime.run(webhooks.due_deliveries(runtime.context))
    for delivery_id in due:
        send(names.WEBHOOKS_DELIVER, str(delivery_id))
    return len(due)
