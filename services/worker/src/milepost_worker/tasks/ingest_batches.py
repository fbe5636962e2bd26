"""``ingest_batches.process`` and the reconciler that re-sends batches left behind."""

from __future__ import annotations

import uuid
from typing import Any

from celery import Task
from celery.exceptions import Retry

from milepost_common import tasks as names
from milepost_worker import batch_leases, metrics
from milepost_worker.celery_app import celery_app
from milepost_worker.handlers import ingest_batches
from milepost_worker.runtime import get_runtime
from milepost_worker.settings import get_settings
from milepost_worker.tasks import failure_text, is_transient, log, observed, retry_delay_s, send


@celery_app.task(name=names.INGEST_BATCHES_PROCESS, bind=True, max_retries=None)
def process(self: Task[Any, Any], batch_id: str) -> None:
    """Process one batch (idempotent); transient errors retry with backoff and jitter, and
    after the last retry the batch is ``failed`` with the error."""
    runtime = get_runtime()
    settings = get_settings()
    with observed(names.INGEST_BATCHES_PROCESS):
        try:
            outcome = runtime.run(
                ingest_batches.process_batch(runtime.context, uuid.UUID(batch_id))
            )
        except Retry:
            raise
        except Exception as exc:
            error = failure_text(exc)
            retries = self.request.retries
            if is_transient(exc) and retries < settings.worker.batch_max_retries:
                delay = retry_delay_s(retries)
                _hold_for_retry(batch_id, delay)
                log.warning(
                    "batch_retry",
                    batch_id=batch_id,
                    retries=retries,
                    delay_s=delay,
                    error=type(exc).__name__,
                )
                raise self.retry(
                    countdown=delay,
                    expires=delay + settings.celery.task_expires_s,
                    max_retries=None,
                ) from exc
            log.exception("batch_failed", batch_id=batch_id)
            try:
                runtime.run(ingest_batches.fail_batch(runtime.context, uuid.UUID(batch_id), error))
            except Exception:  # noqa: BLE001 - its lease expires, the reconciler resends it
                log.warning("batch_fail_unrecorded", batch_id=batch_id)
            return
    for delivery_id in outcome.deliveries:
        send(names.WEBHOOKS_DELIVER, str(delivery_id))


def _hold_for_retry(batch_id: str, delay_s: float) -> None:
    runtime = get_runtime()
    try:
        runtime.run(batch_leases.hold_for_retry(runtime.context, uuid.UUID(batch_id), delay_s))
    except Exception:  # noqa: BLE001 - then the lease expires and the reconciler resends it
        log.warning("batch_lease_not_extended", batch_id=batch_id)


@celery_app.task(name=names.INGEST_BATCHES_RECONCILE)
def reconcile() -> int:
    """Send again batches left received/queued since their last publish attempt, and
    processing ones whose holder's lease expired (its child died or lost the broker)."""
    runtime = get_runtime()
    with observed(names.INGEST_BATCHES_RECONCILE):
        stale = runtime.run(ingest_batches.stale_batches(runtime.context))
    for reason, batch_ids in (("pending", stale.pending), ("lease_expired", stale.lease_expired)):
        for batch_id in batch_ids:
            send(names.INGEST_BATCHES_PROCESS, str(batch_id))
        if batch_ids:
            metrics.BATCHES_REQUEUED.labels(reason).inc(len(batch_ids))
            log.info("batches_reenqueued", reason=reason, count=len(batch_ids))
    return len(stale.pending) + len(stale.lease_expired)
