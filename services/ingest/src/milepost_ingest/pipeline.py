"""The write path shared by batches and OsmAnd fixes: the domain's use case
(``ingest_batches.service.ingest_batch`` / ``ingest_fixes``: check, store) in a transaction,
commit, then enqueue.

Each push runs in its own :func:`unit_of_work` here rather than in the request's
``SessionDep``, for three reasons: the commit must precede the publish of
``ingest_batches.process`` and the ``queued`` mark (a second short transaction), which a
dependency's teardown order cannot make obvious; connection failures of exactly this
block must become ``503`` while a failure after the commit must not (the batch is stored,
the answer is still ``202``); and OsmAnd fixes from many requests share one transaction.
What stays here is the app's: the transactions, the 503 mapping, the publish, the caches'
lifetime, metrics and the log line. Routes stay thin: they hand a parsed submission to one
method of this class.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.exc import DBAPIError

from milepost_common.db import Database, unit_of_work
from milepost_common.domain.ingest_batches import service as batch_service
from milepost_common.domain.ingest_batches.models import BatchSource
from milepost_common.domain.ingest_batches.validation import CheckedItems
from milepost_common.domain.principals import Principal
from milepost_common.logging import get_logger
from milepost_common.tasks import INGEST_BATCHES_PROCESS, Publisher
from milepost_ingest import metrics
from milepost_ingest.unavailable import (
    DatabaseUnavailable,
    database_errors,
    is_number_out_of_range,
)

log = get_logger("milepost.ingest")


class IngestPipeline:
    def __init__(
        self,
        *,
        database: Callable[[], Database],
        publisher: Callable[[], Publisher],
        filters_cache_s: float,
        partitions_cache_s: float,
    ) -> None:
        self._database = database
        self._publisher = publisher
        self.caches = batch_service.IngestCaches.create(filters_cache_s, partitions_cache_s)

    async def org_filters(self, org_id: uuid.UUID) -> batch_service.OrgFilters:
        """The organization's filters and rate limit, cached a few seconds; raises
        DatabaseUnavailable when they must be read and Postgres is down."""
        filters = self.caches.filters.get(org_id)
        if filters is None:
            with database_errors():
                async with self._database().sessionmaker() as session:
                    filters = await batch_service.load_org_filters(
                        session, org_id, self.caches.filters
                    )
        return filters

    async def ingest_batch(
        self, actor: Principal, submission: batch_service.Submission
    ) -> batch_service.BatchOutcome:
        """Store a batch (:func:`batch_service.ingest_batch`) and enqueue its processing.
        The batch and its positions are committed before this returns (or nothing is:
        DatabaseUnavailable, 503); a broker that is down leaves the batch ``received`` for
        the reconciler."""
        started = time.perf_counter()
        with database_errors(self.caches.window.clear):
            try:
                outcome = await self._record_batch(actor, submission, read_attributes=False)
            except DBAPIError as exc:
                if not is_number_out_of_range(exc):
                    raise
                # Attributes are passed on as sent, and one held a number jsonb cannot
                # (1e999999): nothing was written; again, reading each item's attributes,
                # which rejects that item alone.
                outcome = await self._record_batch(actor, submission, read_attributes=True)
        if outcome.created:
            await self._after_commit(actor, submission.source, outcome, started)
        else:
            log.info(
                "ingest_batch_replayed", batch_id=str(outcome.batch_id), key_prefix=actor.label
            )
        return outcome

    async def _record_batch(
        self, actor: Principal, submission: batch_service.Submission, *, read_attributes: bool
    ) -> batch_service.BatchOutcome:
        async with unit_of_work(self._database()) as session:
            return await batch_service.ingest_batch(
                session, actor, submission, self.caches, read_attributes=read_attributes
            )

    async def ingest_fixes(
        self, actor: Principal, items: Sequence[dict[str, Any]], now: datetime
    ) -> list[bool]:
        """Store single fixes (OsmAnd) as one batch (:func:`batch_service.ingest_fixes`),
        then enqueue it; for each fix, whether its device is one of the organization's."""
        started = time.perf_counter()
        with database_errors(self.caches.window.clear):
            async with unit_of_work(self._database()) as session:
                outcome = await batch_service.ingest_fixes(session, actor, items, now, self.caches)
        if outcome.batch is not None:
            await self._after_commit(actor, BatchSource.OSMAND, outcome.batch, started)
        return outcome.known

    async def _after_commit(
        self,
        actor: Principal,
        source: BatchSource,
        outcome: batch_service.BatchOutcome,
        started: float,
    ) -> None:
        committed = time.perf_counter()
        queued = await self._enqueue(outcome.batch_id)
        assert outcome.checked is not None  # noqa: S101 - a created batch was checked
        self._observe(actor, source, outcome.checked, outcome.response, queued)
        metrics.BATCH_LATENCY.labels(source.value).observe(committed - started)

    async def _enqueue(self, batch_id: uuid.UUID) -> bool:
        """Publish, then mark ``queued``; either failing leaves the batch to the reconciler."""
        if not await self._publisher().send(INGEST_BATCHES_PROCESS, str(batch_id)):
            metrics.BATCHES_UNQUEUED.inc()
            return False
        try:
            with database_errors():
                async with unit_of_work(self._database()) as session:
                    await batch_service.mark_queued(session, batch_id)
        except DatabaseUnavailable:
            log.warning("mark_queued_failed", batch_id=str(batch_id))
        return True

    @staticmethod
    def _observe(
        actor: Principal,
        source: BatchSource,
        checked: CheckedItems,
        response: dict[str, Any],
        queued: bool,
    ) -> None:
        label = source.value
        accepted, duplicates = int(response["accepted"]), int(response["duplicates"])
        metrics.BATCH_SIZE.labels(label).observe(checked.total)
        metrics.FIXES_ACCEPTED.labels(label).inc(accepted)
        metrics.FIXES_DUPLICATE.labels(label).inc(duplicates)
        for code, count in Counter(error["code"] for error in checked.errors).items():
            metrics.FIXES_REJECTED.labels(label, code).inc(count)
        log.info(
            "ingest_batch",
            batch_id=str(response["batch_id"]),
            org_id=str(actor.org_id),
            key_prefix=actor.label,
            source=label,
            items=checked.total,
            accepted=accepted,
            rejected=checked.rejected,
            duplicates=duplicates,
            queued=queued,
        )
