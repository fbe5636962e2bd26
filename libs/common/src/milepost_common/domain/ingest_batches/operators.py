"""What operators do with ingest batches (the admin app): find any organization's batch, list
them by organization, device, source, status and time, sum up OsmAnd fixes per device, and
replay a batch's rejected items once their cause is fixed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain import paging
from milepost_common.domain.audit import service as audit
from milepost_common.domain.devices import service as device_service
from milepost_common.domain.ingest_batches.errors import BatchBusy, BatchNotFound
from milepost_common.domain.ingest_batches.models import BatchSource, BatchStatus, IngestBatch
from milepost_common.domain.ingest_batches.repository import IngestBatchRepository
from milepost_common.domain.ingest_batches.schemas import (
    BatchFilters,
    BatchReplayed,
    OsmandDevice,
)
from milepost_common.domain.ingest_batches.service import load_policy
from milepost_common.domain.ingest_batches.validation import check_items, reject_dropped
from milepost_common.domain.positions import service as position_service
from milepost_common.domain.principals import Principal

MAX_REPLAY_ALL = 500


async def get_batch_for_operator(
    session: AsyncSession, batch_id: uuid.UUID, *, for_update: bool = False
) -> IngestBatch:
    """A batch of any organization. Raises BatchNotFound."""
    batch = await IngestBatchRepository(session).get(batch_id, for_update=for_update)
    if batch is None:
        raise BatchNotFound()
    return batch


async def list_batches(
    session: AsyncSession,
    filters: BatchFilters,
    *,
    exclude_source: BatchSource | None = None,
) -> paging.PageResult[IngestBatch]:
    """A keyset page by ``received_at`` filtered by organization (id or name), device (name
    or unique id), source, status, rejected items and time; without ``exclude_source``'s
    batches when given (the console lists OsmAnd fixes summed up by device instead)."""
    return await IngestBatchRepository(session).page(filters, exclude_source=exclude_source)


async def osmand_by_device(
    session: AsyncSession, filters: BatchFilters, *, limit: int = 50
) -> list[OsmandDevice]:
    """The OsmAnd batches matching ``filters`` summed up per organization and device (a
    rejected fix counts for the unique id it was sent with), latest first, at most ``limit``
    devices: how many, when the last came, how many failed and the latest failed one."""
    rows = await IngestBatchRepository(session).osmand_by_device(filters, limit=limit)
    ids = {uuid.UUID(r.device_id) for r in rows if r.device_id}
    devices = await device_service.find_devices(session, ids) if ids else {}
    summary: list[OsmandDevice] = []
    for r in rows:
        device = devices.get(uuid.UUID(r.device_id)) if r.device_id else None
        summary.append(
            OsmandDevice(
                org_id=r.org_id,
                device_id=device.id if device else None,
                unique_id=device.unique_id if device else r.sent_id,
                name=device.name if device else None,
                batches=r.batches,
                accepted=r.accepted,
                rejected=r.rejected,
                last_received_at=r.last_received_at,
                failed=r.failed,
                last_failed_id=r.last_failed_id,
            )
        )
    return summary


async def replay_failed_batches(
    session: AsyncSession, actor: Principal, org_id: uuid.UUID, *, limit: int = MAX_REPLAY_ALL
) -> list[BatchReplayed]:
    """``replay_batch`` for each of the organization's failed batches, oldest first (those
    another transaction holds skipped), read one at a time: a batch keeps up to 10,000
    rejected items, so ``limit`` of them at once could be gigabytes."""
    batch_ids = await IngestBatchRepository(session).failed_for_org(org_id, limit=limit)
    return [
        BatchReplayed.model_validate(await _replay(session, actor, batch_id))
        for batch_id in batch_ids
    ]


async def replay_batch(session: AsyncSession, actor: Principal, batch: IngestBatch) -> IngestBatch:
    """Re-validate the batch's kept rejected items against today's devices and filters,
    store those now valid (repeats count as duplicates), keep the rest with their codes and
    original indexes, and set the batch back to ``received`` so it is processed again (the
    caller publishes ``ingest_batches.process`` after commit; the reconciler covers a failed
    publish). Raises BatchBusy while a worker is processing it. Audited."""
    return await _replay(session, actor, batch.id)


async def _replay(session: AsyncSession, actor: Principal, batch_id: uuid.UUID) -> IngestBatch:
    locked = await IngestBatchRepository(session).get_for_update(batch_id)
    if locked is None:
        raise BatchNotFound()
    if locked.status == BatchStatus.PROCESSING:
        raise BatchBusy()
    now = datetime.now(UTC)
    kept = locked.rejected_items
    expired = locked.rejected_items_expire_at is not None and locked.rejected_items_expire_at <= now
    stored = duplicates = 0
    if kept and not expired:
        items = [entry["item"] for entry in kept]
        policy = await load_policy(session, locked.org_id, items, now)
        checked = check_items(items, policy)
        inserted = await position_service.store_positions(
            session, locked.org_id, locked.id, checked.rows
        )
        # A device moved, deleted or disabled since the policy was read: rejected, as then.
        reject_dropped(checked, inserted.dropped, items)
        stored, duplicates = inserted.count, checked.valid - inserted.count
        original = [entry["index"] for entry in kept]
        locked.errors = [{**e, "index": original[e["index"]]} for e in checked.errors]
        locked.rejected_items = [
            {**r, "index": original[r["index"]]} for r in checked.rejected_items
        ]
        if not locked.rejected_items:
            locked.rejected_items_expire_at = None
        locked.accepted += stored
        locked.duplicates += duplicates
        locked.rejected = len(locked.errors)
        locked.device_ids = sorted({*locked.device_ids, *(str(d) for d in inserted.device_ids)})
    locked.status = BatchStatus.RECEIVED
    locked.queued_at = locked.processing_started_at = locked.processed_at = None
    locked.last_error = None
    session.add(locked)
    await session.flush()
    await audit.record(
        session,
        actor,
        "ingest_batches.replay",
        target_type="ingest_batch",
        target_id=locked.id,
        org_id=locked.org_id,
        diff={"stored": stored, "duplicates": duplicates, "still_rejected": locked.rejected},
    )
    return locked
