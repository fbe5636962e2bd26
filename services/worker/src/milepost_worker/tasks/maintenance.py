"""Beat jobs on the maintenance queue: offline alerts, partitions, retention."""

from __future__ import annotations

from milepost_common import tasks as names
from milepost_worker.celery_app import celery_app
from milepost_worker.handlers import maintenance
from milepost_worker.runtime import get_runtime
from milepost_worker.tasks import log, observed, send


@celery_app.task(name=names.ALERTS_DETECT_OFFLINE)
def detect_offline() -> int:
    """Offline alerts and `device.offline` (each once per silence) and their webhooks."""
    runtime = get_runtime()
    with observed(names.ALERTS_DETECT_OFFLINE):
        outcome = runtime.run(maintenance.detect_offline(runtime.context))
    for delivery_id in outcome.deliveries:
        send(names.WEBHOOKS_DELIVER, str(delivery_id))
    return outcome.alerts_created


@celery_app.task(name=names.POSITIONS_MAINTAIN_PARTITIONS)
def maintain_partitions() -> int:
    """Position partitions exist from the longest retention back to two days ahead."""
    runtime = get_runtime()
    with observed(names.POSITIONS_MAINTAIN_PARTITIONS):
        created = runtime.run(maintenance.maintain_partitions(runtime.context))
    if created:
        log.info("partitions_created", count=created)
    return created


@celery_app.task(name=names.RETENTION_APPLY)
def apply_retention() -> int:
    """Drop and delete data past each organization's retention (batched, repeatable); raises
    RetentionIncomplete, after the others, when some organizations' pass failed."""
    runtime = get_runtime()
    with observed(names.RETENTION_APPLY):
        outcome = runtime.run(maintenance.apply_retention(runtime.context))
        log.info(
            "retention_applied",
            partitions_dropped=outcome.partitions_dropped,
            partitions_deferred=outcome.partitions_deferred,
            rows_deleted=outcome.rows_deleted,
            rejected_items_cleared=outcome.rejected_items_cleared,
            organizations_failed=[str(org_id) for org_id in outcome.organizations_failed],
        )
        if outcome.organizations_failed:
            # After every other organization's pass: counted as the task's error.
            raise maintenance.RetentionIncomplete(
                f"{len(outcome.organizations_failed)} organization(s) failed (retention_failed)"
            )
    return len(outcome.partitions_dropped) + sum(outcome.rows_deleted.values())
