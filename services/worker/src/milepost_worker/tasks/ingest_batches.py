"""``ingest_batches.process`` and the reconciler that re-sends batches left behind."""

from __future__ import annotations

import uuid
from typing import Any

from celery import Task
from celery.exceptions import Retry

from milepost_common import tasks as names
from milepost_worker.celery_app import celery_app
from milepost_worker.handlers import ingest_batches, maintenance
from milepost_worker.runtime import get_runtime
from milepost_worker.settings import get_settings
from milepost_worker.tasks import is_transient, log, observed, retry_delay_s, send


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
            error = f"{type(exc).__name__}: {exc}"
            retries = self.request.retries
            if is_transient(exc) and retries < settings.worker.batch_max_retries:
                delay = retry_delay_s(retries)
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
            except Exception:  # noqa: BLE001 - the reconciler finds it still processing
                log.warning("batch_fail_unrecorded", batch_id=batch_id)
            return
    for delivery_id in outcome.deliveries:
        send(names.WEBHOOKS_DELIVER, str(delivery_id))


@celery_app.task(name=names.INGEST_BATCHES_RECONCILE)
def reconcile() -> int:
    """Enqueue again batches left received/queued, or processing far beyond the time limit."""
    runtime = get_runtime()
    with observed(names.INGEST_BATCHES_RECONCILE):
        batch_ids = runtime.run(maintenance.stale_batches(runtime.context))
    for batch_id in batch_ids:
        send(names.INGEST_BATCHES_PROCESS, str(batch_id))
    if batch_ids:
        log.info("batches_reenqueued", count=len(batch_ids))
    return len(batch_ids)
