"""The metrics the monitoring (deploy/monitoring) alerts on: the backlog snapshot the heartbeat
exports, failed batches, dead webhook deliveries and failed beat jobs."""

from __future__ import annotations

import uuid
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.ingest_batches.models import BatchSource, BatchStatus, IngestBatch
from milepost_common.domain.webhooks.models import DeliveryStatus
from milepost_common.migrate import PARTITION_DAYS_AHEAD
from milepost_common.testing.factories import make_organization
from milepost_worker.handlers import ingest_batches, maintenance
from milepost_worker.handlers import system as system_handler
from milepost_worker.handlers.webhooks import Outcome
from milepost_worker.runtime import WorkerContext
from milepost_worker.tasks import maintenance as maintenance_tasks
from milepost_worker.tasks import system
from milepost_worker.tasks import webhooks as webhook_tasks
from milepost_worker.timeutil import utcnow


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class TestBacklog:
    async def test_counts_waiting_batches_and_measures_the_oldest_unprocessed(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        before = await system_handler.backlog(ctx)
        org = await make_organization(session)
        now = utcnow()

        def batch(status: BatchStatus, age: timedelta) -> IngestBatch:
            return IngestBatch(
                org_id=org.id, source=BatchSource.JSON, status=status, received_at=now - age
            )

        session.add_all(
            [
                batch(BatchStatus.RECEIVED, timedelta(seconds=5)),
                batch(BatchStatus.QUEUED, timedelta(minutes=10)),
                batch(BatchStatus.PROCESSING, timedelta(seconds=30)),
                batch(BatchStatus.FAILED, timedelta(days=3)),  # failed: not lag
                batch(BatchStatus.FAILED, timedelta(days=2)),
                batch(BatchStatus.PROCESSED, timedelta(days=5)),
            ]
        )
        await session.commit()

        after = await system_handler.backlog(ctx)

        added = {s: after.batches[s] - before.batches[s] for s in after.batches}
        assert added == {
            BatchStatus.RECEIVED: 1,
            BatchStatus.QUEUED: 1,
            BatchStatus.PROCESSING: 1,
            BatchStatus.FAILED: 2,
        }
        # The database's clock: now() is when the test's transaction began, a moment earlier.
        assert 540 <= after.oldest_unprocessed_age_s < 3600
        assert after.partition_days_ahead == PARTITION_DAYS_AHEAD

    async def test_nothing_to_do_is_no_lag(self, ctx: WorkerContext) -> None:
        backlog = await system_handler.backlog(ctx)

        assert backlog.oldest_unprocessed_age_s == 0.0
        assert backlog.batches[BatchStatus.RECEIVED] == 0

    def test_heartbeat_exports_the_snapshot_as_gauges(self) -> None:
        system.export_backlog(
            system_handler.Backlog(
                batches={BatchStatus.QUEUED: 7, BatchStatus.FAILED: 2},
                oldest_unprocessed_age_s=42.5,
                partition_days_ahead=1,
            )
        )

        assert sample("milepost_worker_ingest_batches", status="queued") == 7
        assert sample("milepost_worker_ingest_batches", status="failed") == 2
        assert sample("milepost_worker_oldest_unprocessed_batch_age_seconds") == 42.5
        assert sample("milepost_worker_positions_partition_days_ahead") == 1

    def test_every_task_outcome_is_exported_from_zero(self) -> None:
        # A series first seen at 1 is invisible to increase(): an hourly job failing once on
        # each of several pods never raised MilepostPartitionMaintenanceFailing.
        labels = {"task": "positions.maintain_partitions", "outcome": "error"}

        assert REGISTRY.get_sample_value("milepost_worker_tasks_total", labels) is not None


class TestGivenUp:
    async def test_a_failed_batch_is_counted_once(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        org = await make_organization(session)
        row = IngestBatch(org_id=org.id, source=BatchSource.JSON, status=BatchStatus.QUEUED)
        processed = IngestBatch(
            org_id=org.id, source=BatchSource.JSON, status=BatchStatus.PROCESSED
        )
        session.add_all([row, processed])
        await session.commit()
        before = sample("milepost_worker_batches_failed_total")

        await ingest_batches.fail_batch(ctx, row.id, "ValueError: bad")
        # Processed meanwhile (or unknown): not failed, not counted.
        await ingest_batches.fail_batch(ctx, processed.id, "ValueError: bad")
        await ingest_batches.fail_batch(ctx, uuid.uuid4(), "ValueError: bad")

        assert sample("milepost_worker_batches_failed_total") == before + 1

    @pytest.mark.parametrize(
        ("status", "counted"),
        [(DeliveryStatus.DEAD, 1), (DeliveryStatus.SUCCEEDED, 0), (None, 0)],
    )
    def test_a_dead_delivery_is_counted(
        self, monkeypatch: pytest.MonkeyPatch, status: DeliveryStatus | None, counted: int
    ) -> None:
        class Runtime:
            context = None

            def run(self, coroutine: Coroutine[Any, Any, Any]) -> Outcome:
                coroutine.close()
                return Outcome(status)

        monkeypatch.setattr(webhook_tasks, "get_runtime", Runtime)
        before = sample("milepost_worker_webhook_deliveries_dead_total")

        webhook_tasks.deliver.run(str(uuid.uuid4()))

        assert sample("milepost_worker_webhook_deliveries_dead_total") == before + counted


class TestRetentionTask:
    def test_an_organization_failing_is_the_tasks_error(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The handler goes on past a failing organization: the task still counts the run as
        # failed, once, after the others were done.
        class Runtime:
            context = None

            def run(self, coroutine: Coroutine[Any, Any, Any]) -> maintenance.RetentionOutcome:
                coroutine.close()
                return maintenance.RetentionOutcome(organizations_failed=[uuid.uuid4()])

        monkeypatch.setattr(maintenance_tasks, "get_runtime", Runtime)
        labels = {"task": "retention.apply", "outcome": "error"}
        before = sample("milepost_worker_tasks_total", **labels)

        with pytest.raises(maintenance.RetentionIncomplete):
            maintenance_tasks.apply_retention.run()

        assert sample("milepost_worker_tasks_total", **labels) == before + 1
