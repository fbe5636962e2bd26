"""Use cases of ingest batches: ingest a push (check its items, record it with its
positions, or answer a repeated Idempotency-Key) or a few single fixes, read a batch, mark it
queued; and the worker's side of a batch: its lease, its processing and failure marks, the
reconciler's pick of the batches left behind. What operators do with batches (find, list,
sum up, replay) is ``operators.py``.

Nothing here commits: the caller's transaction holds the batch row and its positions
together, so a batch is either wholly stored or not at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.cache import TtlCache
from milepost_common.domain.ingest_batches.errors import (
    BatchNotFound,
    IdempotencyKeyReused,
)
from milepost_common.domain.ingest_batches.models import BatchSource, BatchStatus, IngestBatch
from milepost_common.domain.ingest_batches.repository import IngestBatchRepository, NewBatch
from milepost_common.domain.ingest_batches.validation import (
    CheckedItems,
    DeviceRef,
    FixPolicy,
    build_policy,
    check_items,
    named_devices,
    reject_dropped,
)
from milepost_common.domain.positions import service as position_service
from milepost_common.domain.principals import Principal
from milepost_common.errors import NotFound

IDEMPOTENCY_TTL = timedelta(hours=24)
REJECTED_ITEMS_KEPT = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Submission:
    """One push as received: its items in order, and how to recognise it again."""

    source: BatchSource
    items: Sequence[Any]
    received_at: datetime
    idempotency_key: str | None = None
    body_hash: str | None = None
    raws: Sequence[Any] | None = None  # each item's JSON as sent (what a rejection keeps)


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """The 202 answer of a push; ``created`` is False for an idempotent replay."""

    batch_id: uuid.UUID
    response: dict[str, Any]
    created: bool
    checked: CheckedItems | None = None


@dataclass(frozen=True, slots=True)
class OrgFilters:
    """An organization's ingest settings (DESIGN.md: filters configurable per organization)."""

    retention_days: int
    max_clock_skew_s: int
    max_speed_kmh: float
    ingest_rate_limit: str | None


def _json(value: Any) -> str:
    # Postgres text and jsonb cannot hold NUL; a rejected item may (it is kept as sent).
    return orjson.dumps(value).replace(b"\\u0000", b"\\ufffd").decode()


@dataclass(frozen=True, slots=True)
class IngestCaches:
    """What an ingest process reuses between pushes, a few seconds at most each: the
    organizations' filters, their devices by ``unique_id`` (a disable or a transfer is seen
    within that time; a device not found is looked up again every time, so one registered a
    moment ago is found at once), and the storable partition window."""

    filters: TtlCache[uuid.UUID, OrgFilters]
    devices: TtlCache[tuple[uuid.UUID, str], DeviceRef]
    window: TtlCache[str, position_service.StorableWindow]

    @classmethod
    def create(cls, filters_s: float, window_s: float) -> IngestCaches:
        return cls(
            filters=TtlCache(filters_s),
            devices=TtlCache(filters_s, max_entries=100_000),
            window=TtlCache(window_s),
        )


async def load_org_filters(
    session: AsyncSession,
    org_id: uuid.UUID,
    cache: TtlCache[uuid.UUID, OrgFilters] | None = None,
) -> OrgFilters:
    """The organization's filters (from ``cache`` when it holds them, then kept there).
    Raises NotFound for an organization that does not exist (deleted under a cached key)."""
    if cache is not None and (filters := cache.get(org_id)) is not None:
        return filters
    row = await IngestBatchRepository(session).org_filters(org_id)
    if row is None:
        raise NotFound("Organization not found.")
    filters = OrgFilters(
        row.retention_days, row.max_clock_skew_s, row.max_speed_kmh, row.ingest_rate_limit
    )
    if cache is not None:
        cache.put(org_id, filters)
    return filters


async def find_devices(
    session: AsyncSession,
    org_id: uuid.UUID,
    unique_ids: set[str],
    cache: TtlCache[tuple[uuid.UUID, str], DeviceRef] | None = None,
) -> dict[str, DeviceRef]:
    """The organization's devices by ``unique_id``; another organization's are never found.
    With a cache, devices found are reused from it and those not found looked up again."""
    if cache is None:
        return await _fetch_devices(session, org_id, unique_ids)
    found: dict[str, DeviceRef] = {}
    missing: set[str] = set()
    for unique_id in unique_ids:
        device = cache.get((org_id, unique_id))
        if device is None:
            missing.add(unique_id)
        else:
            found[unique_id] = device
    if missing:
        fetched = await _fetch_devices(session, org_id, missing)
        for unique_id, device in fetched.items():
            cache.put((org_id, unique_id), device)
        found.update(fetched)
    return found


async def _fetch_devices(
    session: AsyncSession, org_id: uuid.UUID, unique_ids: set[str]
) -> dict[str, DeviceRef]:
    rows = await IngestBatchRepository(session).devices_by_unique_id(org_id, sorted(unique_ids))
    # Plain uuid.UUID (asyncpg returns its own subclass): orjson writes those natively.
    return {
        row.unique_id: DeviceRef(uuid.UUID(int=row.id.int), row.disabled, row.assigned_at)
        for row in rows
    }


async def load_policy(
    session: AsyncSession,
    org_id: uuid.UUID,
    items: Sequence[Any],
    now: datetime,
    caches: IngestCaches | None = None,
) -> FixPolicy:
    """The rules the items are checked against; what ``caches`` hold is reused, anything
    else read now."""
    filters = await load_org_filters(session, org_id, caches.filters if caches else None)
    window = await position_service.storable_window(session, now, caches.window if caches else None)
    return build_policy(
        now,
        retention_days=filters.retention_days,
        max_clock_skew_s=filters.max_clock_skew_s,
        max_speed_kmh=filters.max_speed_kmh,
        window=window,
        devices=await find_devices(
            session, org_id, named_devices(items), caches.devices if caches else None
        ),
    )


async def prior_answer(
    session: AsyncSession, actor: Principal, submission: Submission
) -> BatchOutcome | None:
    """The stored answer when this Idempotency-Key was used within 24 h with the same body;
    None when it is unused (or expired: it is then released). Raises IdempotencyKeyReused
    for the same key with another body."""
    key = submission.idempotency_key
    if key is None:
        return None
    repo = IngestBatchRepository(session)
    prior = await repo.find_by_idempotency_key(actor.require_org(), key)
    if prior is None:
        return None
    if prior.received_at <= submission.received_at - IDEMPOTENCY_TTL:
        await repo.release_idempotency_key(prior.id)
        return None
    if prior.body_hash != submission.body_hash:
        raise IdempotencyKeyReused()
    return BatchOutcome(prior.id, prior.response, created=False)


async def record_batch(
    session: AsyncSession, actor: Principal, submission: Submission, checked: CheckedItems
) -> BatchOutcome:
    """Write the batch row (status ``received``, rejected items kept 7 days) and its new
    positions. With an Idempotency-Key already used (also concurrently, once that request
    commits), writes nothing and answers as :func:`prior_answer` does."""
    org_id = actor.require_org()
    repo = IngestBatchRepository(session)
    batch_id = uuid.uuid4()
    new_batch = NewBatch(
        id=batch_id,
        org_id=org_id,
        api_key_id=actor.id,
        source=submission.source,
        idempotency_key=submission.idempotency_key,
        body_hash=submission.body_hash,
        received_at=submission.received_at,
        rejected=checked.rejected,
        errors_json=_json(checked.errors),
        rejected_items_json=_json(checked.rejected_items),
        rejected_items_expire_at=(
            submission.received_at + REJECTED_ITEMS_KEPT if checked.rejected_items else None
        ),
    )
    if await repo.insert(new_batch) is None:
        prior = await prior_answer(session, actor, submission)
        if prior is None:  # the holder of the key expired in between: released, try again
            if await repo.insert(new_batch) is None:
                raise IdempotencyKeyReused()
        else:
            return prior
    response, dropped = await repo.store_and_finish(batch_id, org_id, checked.rows)
    if dropped:
        # The device cache was stale (a transfer, delete or disable within its seconds): those
        # fixes were not stored, so they are rejected as an uncached look-up would have.
        reject_dropped(checked, dropped, submission.items, submission.raws)
        response = await _record_rejected(session, batch_id, checked, response)
    return BatchOutcome(batch_id, response, created=True, checked=checked)


async def _record_rejected(
    session: AsyncSession, batch_id: uuid.UUID, checked: CheckedItems, response: dict[str, Any]
) -> dict[str, Any]:
    """Store the batch's rejected items and counts again after the insert dropped some."""
    batch = await IngestBatchRepository(session).get(batch_id)
    assert batch is not None  # noqa: S101 - written in this transaction
    batch.rejected = checked.rejected
    batch.errors = checked.errors
    batch.rejected_items = orjson.loads(_json(checked.rejected_items))  # NUL replaced
    batch.rejected_items_expire_at = batch.received_at + REJECTED_ITEMS_KEPT
    batch.response = {**response, "rejected": checked.rejected, "errors": checked.errors}
    session.add(batch)
    await session.flush()
    return batch.response


async def ingest_batch(
    session: AsyncSession,
    actor: Principal,
    submission: Submission,
    caches: IngestCaches | None = None,
    *,
    read_attributes: bool = False,
) -> BatchOutcome:
    """Check a push's items against the organization's rules and record it (status
    ``received``) with its new positions; a repeated Idempotency-Key answers the first
    outcome (``created`` False) and writes nothing. Raises IdempotencyKeyReused for the key
    with another body. The caller commits, then enqueues the processing of a created batch.
    ``read_attributes``: see :func:`check_items`."""
    outcome = await prior_answer(session, actor, submission)
    if outcome is not None:
        return outcome
    items = submission.items
    policy = await load_policy(session, actor.require_org(), items, submission.received_at, caches)
    checked = check_items(items, policy, submission.raws, read_attributes=read_attributes)
    return await record_batch(session, actor, submission, checked)


@dataclass(frozen=True, slots=True)
class FixesOutcome:
    """For each fix, whether its device is one of the organization's; the batch recorded of
    those (None when there was none)."""

    known: list[bool]
    batch: BatchOutcome | None


async def ingest_fixes(
    session: AsyncSession,
    actor: Principal,
    items: Sequence[dict[str, Any]],
    now: datetime,
    caches: IngestCaches | None = None,
) -> FixesOutcome:
    """Record single fixes (OsmAnd) as one batch. Fixes of devices the organization does not
    have are left out and not recorded (their senders are answered 400); the others are
    checked and stored as a push's items are."""
    policy = await load_policy(session, actor.require_org(), items, now, caches)
    known = [item["device_id"] in policy.devices for item in items]
    kept = [item for item, is_known in zip(items, known, strict=True) if is_known]
    if not kept:
        return FixesOutcome(known, None)
    submission = Submission(BatchSource.OSMAND, kept, now)
    checked = check_items(kept, policy)
    return FixesOutcome(known, await record_batch(session, actor, submission, checked))


async def mark_queued(session: AsyncSession, batch_id: uuid.UUID) -> bool:
    """``received → queued`` after a successful publish; False when a worker was faster."""
    return await IngestBatchRepository(session).mark_queued(batch_id)


async def claim_batch(
    session: AsyncSession, batch_id: uuid.UUID, holder: str, lease_s: float, now: datetime
) -> bool:
    """Mark the batch ``processing`` under ``holder``'s lease of ``lease_s`` seconds (by the
    database's clock); False when it is processed already (after waiting for a live
    processing transaction to end)."""
    return await IngestBatchRepository(session).claim(batch_id, holder, lease_s, now)


async def renew_lease(
    session: AsyncSession, batch_id: uuid.UUID, holder: str, lease_s: float
) -> bool:
    """Extend ``holder``'s lease to ``lease_s`` seconds from now; False once it holds none
    (the batch ended, or was claimed again after the lease expired)."""
    return await IngestBatchRepository(session).renew_lease(batch_id, holder, lease_s)


async def lock_for_processing(
    session: AsyncSession, batch_id: uuid.UUID, holder: str
) -> IngestBatch | None:
    """The batch ``holder`` claimed, locked for this transaction; None when it is gone,
    processed, or claimed again since by another holder (ours expired: that one processes
    it)."""
    batch = await IngestBatchRepository(session).lock_for_processing(batch_id)
    if batch is None or batch.status == BatchStatus.PROCESSED or batch.lease_holder != holder:
        return None
    return batch


async def mark_processed(session: AsyncSession, batch: IngestBatch, now: datetime) -> None:
    """``processed`` in the transaction of its effects, its lease ended."""
    batch.status = BatchStatus.PROCESSED
    batch.processed_at = now
    batch.last_error = None
    batch.lease_holder = batch.lease_expires_at = None
    session.add(batch)
    await session.flush()


async def mark_failed(session: AsyncSession, batch_id: uuid.UUID, holder: str, error: str) -> bool:
    """``failed`` with the error (its first 2,000 characters), unless it is processed or
    another holder's now; whether it was marked."""
    return await IngestBatchRepository(session).mark_failed(batch_id, holder, error)


UNPROCESSED = (BatchStatus.RECEIVED, BatchStatus.QUEUED, BatchStatus.PROCESSING)


@dataclass(frozen=True, slots=True)
class Waiting:
    """Batches by status (every status asked for, 0 when it has none) and the age of the
    oldest one not processed yet (the processing lag; 0.0 when there is none)."""

    batches: dict[BatchStatus, int]
    oldest_unprocessed_age_s: float


async def count_waiting(session: AsyncSession) -> Waiting:
    """The batches not processed yet and the failed ones, by status, timed by the
    database's clock (the worker's heartbeat: no principal). Reads only."""
    waiting = (*UNPROCESSED, BatchStatus.FAILED)
    counts = dict.fromkeys(waiting, 0)
    oldest = 0.0
    for status, count, age_s in await IngestBatchRepository(session).waiting_by_status(waiting):
        counts[status] = count
        if status in UNPROCESSED:
            oldest = max(oldest, float(age_s))
    return Waiting(counts, oldest)


@dataclass(frozen=True, slots=True)
class StaleBatch:
    """A batch to send again: its lease expired while ``processing`` (``holder`` had it),
    or its publish is pending (``received`` or ``queued``)."""

    id: uuid.UUID
    lease_expired: bool
    holder: str | None


async def requeue_stale_batches(
    session: AsyncSession, pending_after: timedelta, lease_s: float
) -> list[StaleBatch]:
    """Mark ``queued`` as of now (their next resend is again ``pending_after`` away), lease
    cleared, and return, oldest first and at most 1,000: the ``received``/``queued``
    batches whose last publish attempt is ``pending_after`` old and the ``processing`` ones
    whose lease has expired (claimed without one: ``lease_s`` after the claim). Batches
    locked by a live transaction are left alone."""
    found = await IngestBatchRepository(session).requeue_stale(pending_after, lease_s)
    return [
        StaleBatch(batch_id, status == BatchStatus.PROCESSING, holder)
        for batch_id, status, holder in found
    ]


FINAL = (BatchStatus.PROCESSED, BatchStatus.FAILED)


async def clear_expired_rejected_items(session: AsyncSession, now: datetime, *, limit: int) -> int:
    """Empty the rejected items (and their expiry) of up to ``limit`` batches whose items
    expired by ``now``; their counts and codes (``rejected``, ``errors``) stay. How many
    batches were cleared. Retention: no principal; repeat while it returns ``limit``. A
    replay of a cleared batch finds no items to re-validate, as one after the expiry."""
    return await IngestBatchRepository(session).clear_expired_rejected_items(now, limit=limit)


async def delete_expired_batches(
    session: AsyncSession, org_id: uuid.UUID, cutoff: datetime, *, limit: int
) -> int:
    """Delete up to ``limit`` of the organization's batches received before ``cutoff`` that
    are ``processed`` or ``failed`` (never one still to process); how many went. Only
    ``positions.batch_id`` names a batch (no foreign key), and those fixes are as old, give
    or take the clock skew ingest allows; an Idempotency-Key expires after 24 h, and a
    retention is a day at least. Retention: no principal; repeat while it returns
    ``limit``."""
    return await IngestBatchRepository(session).delete_expired(org_id, cutoff, FINAL, limit=limit)


async def get_batch(session: AsyncSession, actor: Principal, batch_id: uuid.UUID) -> IngestBatch:
    """Raises BatchNotFound for a missing batch or one of another organization."""
    batch = await IngestBatchRepository(session).get_for_org(actor.require_org(), batch_id)
    if batch is None:
        raise BatchNotFound()
    return batch
