"""Statements on ``ingest_batches``: the write path's statements are hand-written SQL (one
round trip each, JSON serialized once by orjson); reads go through the table model, the
operators' filters (organization, device, source, status, time) included.

The worker's statements are here too: the lease a worker child holds on the batch it
processes (claim, renew, release with the final status), the lock its processing transaction
takes, and the reconciler's pick of the batches left behind.

A lease records the holder (a worker child's id) and an expiry ``lease_s`` ahead, by the
database's clock (the one the reconciler compares with). It only says who is alive;
exclusion stays with the row. A claim locks it ``FOR UPDATE``, which waits for a processing
transaction's ``FOR KEY SHARE``; that weaker lock leaves the row open to renewals (plain
updates of non-key columns), so a slow batch keeps its lease while another claim waits, then
finds it ``processed``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, Text, cast, func, or_, text, update
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain import paging
from milepost_common.domain.base import find_by_id
from milepost_common.domain.devices.models import Device
from milepost_common.domain.ingest_batches.models import BatchSource, BatchStatus, IngestBatch
from milepost_common.domain.ingest_batches.schemas import BatchFilters
from milepost_common.domain.organizations import repository as org_repository
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.positions import repository as positions_sql

# The backlog the worker's heartbeat exports.
_WAITING = text(
    "SELECT status, count(*), extract(epoch FROM now() - min(received_at))"
    " FROM ingest_batches WHERE status = ANY(:statuses) GROUP BY status"
)


@dataclass(frozen=True, slots=True)
class NewBatch:
    id: uuid.UUID
    org_id: uuid.UUID
    api_key_id: uuid.UUID | None
    source: BatchSource
    idempotency_key: str | None
    body_hash: str | None
    received_at: datetime
    rejected: int
    errors_json: str
    rejected_items_json: str
    rejected_items_expire_at: datetime | None


# With an idempotency key, a concurrent request holding the same key makes this wait for
# that transaction: DO NOTHING once it commits (the caller then reads the winner's answer),
# the insert goes through if it rolls back.
_INSERT = text(
    """
    INSERT INTO ingest_batches (id, org_id, api_key_id, source, idempotency_key, body_hash,
                                status, accepted, rejected, duplicates, errors, rejected_items,
                                rejected_items_expire_at, response, device_ids, received_at,
                                attempts)
    VALUES (:id, :org_id, :api_key_id, :source, :idempotency_key, :body_hash,
            :status, 0, :rejected, 0, CAST(:errors AS jsonb), CAST(:rejected_items AS jsonb),
            :rejected_items_expire_at, '{}'::jsonb, '[]'::jsonb, :received_at, 0)
    ON CONFLICT (org_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id
    """
)

# The positions and, from what was inserted, the batch's counts and stored answer: one
# statement, so the errors cross the wire once and the counts cost no extra round trip. Rows
# the insert dropped (positions_sql.INSERTED_CTE) are returned to be recorded as rejected.
_STORE_AND_FINISH = text(
    f"""
    WITH {positions_sql.INSERTED_CTE},
    counted AS (
        SELECT count(*) AS n,
               coalesce(jsonb_agg(DISTINCT device_id::text), '[]'::jsonb) AS devices,
               {positions_sql.DROPPED_JSON} AS dropped
        FROM inserted
    )
    UPDATE ingest_batches AS b
    SET accepted = counted.n,
        duplicates = CAST(:valid AS integer) - counted.n - jsonb_array_length(counted.dropped),
        device_ids = counted.devices,
        response = jsonb_build_object('batch_id', b.id, 'accepted', counted.n,
                                      'rejected', b.rejected,
                                      'duplicates', CAST(:valid AS integer) - counted.n
                                                    - jsonb_array_length(counted.dropped),
                                      'errors', b.errors)
    FROM counted
    WHERE b.id = :batch_id
    RETURNING b.response, counted.dropped
    """  # noqa: S608 - constant SQL
)

# Only a batch still `received` becomes `queued`: a worker may already have started it.
_MARK_QUEUED = text(
    """
    UPDATE ingest_batches SET status = :queued, queued_at = now()
    WHERE id = :id AND status = :received
    """
)


# Retention, a bounded batch each (rows a replay holds are skipped until the next run):
# expired rejected items cleared, an organization's old batches in a final status deleted.
_CLEAR_EXPIRED_REJECTED = text(
    """
    UPDATE ingest_batches SET rejected_items = '[]'::jsonb, rejected_items_expire_at = NULL
    WHERE id IN (SELECT id FROM ingest_batches WHERE rejected_items_expire_at <= :now
                 LIMIT :n FOR UPDATE SKIP LOCKED)
    """
)
_DELETE_EXPIRED = text(
    """
    DELETE FROM ingest_batches WHERE id IN (
        SELECT id FROM ingest_batches WHERE org_id = :org AND received_at < :cutoff
        AND status = ANY(:final) LIMIT :n FOR UPDATE SKIP LOCKED)
    """
)


@dataclass(frozen=True, slots=True)
class DeviceRow:
    id: uuid.UUID
    unique_id: str
    disabled: bool
    assigned_at: datetime | None


@dataclass(frozen=True, slots=True)
class OrgFilterRow:
    retention_days: int
    max_clock_skew_s: int
    max_speed_kmh: float
    ingest_rate_limit: str | None


_DEVICES = text(
    """
    SELECT id, unique_id, disabled, assigned_at FROM devices
    WHERE org_id = :org_id AND unique_id = ANY(CAST(:unique_ids AS text[]))
    """
)


# The values that end a lease, with the batch's final status.
RELEASED: dict[str, Any] = {"lease_holder": None, "lease_expires_at": None}


def _lease_end(lease_s: float) -> ColumnElement[datetime]:
    return func.now() + timedelta(seconds=lease_s)


# A rejected item keeps the fix as sent: its device_id is the tracker's unique id.
_REJECTED_DEVICE = text(
    "EXISTS (SELECT 1 FROM jsonb_array_elements(ingest_batches.rejected_items) AS r "
    "WHERE r->'item'->>'device_id' ILIKE :device_pattern ESCAPE '\\')"
)


def _like(part: str) -> str:
    escaped = part.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _device_condition(part: str) -> ColumnElement[bool]:
    """A batch with a stored fix of a device whose name or unique id contains ``part``, or a
    rejected fix sent for such a unique id (registered or not)."""
    devices = select(cast(col(Device.id), Text)).where(
        or_(
            col(Device.name).icontains(part, autoescape=True),
            col(Device.unique_id).icontains(part, autoescape=True),
        )
    )
    # ?| : any of the array's strings is an element of the JSON array.
    stored = col(IngestBatch.device_ids).op("?|")(func.array(devices.scalar_subquery()))
    rejected = _REJECTED_DEVICE.bindparams(device_pattern=_like(part))
    return or_(stored, rejected)


def _conditions(filters: BatchFilters) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if filters.org_id is not None:
        where.append(col(IngestBatch.org_id) == filters.org_id)
    if filters.org_name:
        where.append(col(IngestBatch.org_id).in_(org_repository.ids_named(filters.org_name)))
    if filters.device:
        where.append(_device_condition(filters.device))
    if filters.source is not None:
        where.append(col(IngestBatch.source) == filters.source)
    if filters.status is not None:
        where.append(col(IngestBatch.status) == filters.status)
    if filters.from_ is not None:
        where.append(col(IngestBatch.received_at) >= filters.from_)
    if filters.to is not None:
        where.append(col(IngestBatch.received_at) < filters.to)
    if filters.has_rejected is not None:
        rejected = col(IngestBatch.rejected)
        where.append(rejected > 0 if filters.has_rejected else rejected == 0)
    return where


class IngestBatchRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, batch: NewBatch) -> uuid.UUID | None:
        """The new row's id; None when the organization already used the idempotency key."""
        result = await self.session.execute(
            _INSERT,
            {
                "id": batch.id,
                "org_id": batch.org_id,
                "api_key_id": batch.api_key_id,
                "source": batch.source.value,
                "idempotency_key": batch.idempotency_key,
                "body_hash": batch.body_hash,
                "status": BatchStatus.RECEIVED.value,
                "rejected": batch.rejected,
                "errors": batch.errors_json,
                "rejected_items": batch.rejected_items_json,
                "rejected_items_expire_at": batch.rejected_items_expire_at,
                "received_at": batch.received_at,
            },
        )
        inserted: uuid.UUID | None = result.scalar_one_or_none()
        return inserted

    async def store_and_finish(
        self, batch_id: uuid.UUID, org_id: uuid.UUID, rows: positions_sql.NewPositions
    ) -> tuple[dict[str, Any], list[positions_sql.DroppedFix]]:
        """Insert the batch's new positions, store its counts; its answer, the rows dropped."""
        result = await self.session.execute(
            _STORE_AND_FINISH,
            {"org_id": org_id, "batch_id": batch_id, "rows": rows.to_json(), "valid": len(rows)},
        )
        response, dropped = result.one()
        return response, positions_sql.dropped_fixes(dropped)

    async def find_by_idempotency_key(self, org_id: uuid.UUID, key: str) -> IngestBatch | None:
        query = select(IngestBatch).where(
            col(IngestBatch.org_id) == org_id, col(IngestBatch.idempotency_key) == key
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def release_idempotency_key(self, batch_id: uuid.UUID) -> None:
        """Free an expired key for reuse; the batch itself stays."""
        await self.session.execute(
            text("UPDATE ingest_batches SET idempotency_key = NULL WHERE id = :id"),
            {"id": batch_id},
        )

    async def clear_expired_rejected_items(self, now: datetime, *, limit: int) -> int:
        """Empty up to ``limit`` batches' rejected items expired by ``now``; how many."""
        result = await self.session.execute(_CLEAR_EXPIRED_REJECTED, {"now": now, "n": limit})
        return int(getattr(result, "rowcount", 0) or 0)

    async def delete_expired(
        self, org_id: uuid.UUID, cutoff: datetime, final: Sequence[BatchStatus], *, limit: int
    ) -> int:
        """Delete up to ``limit`` of the organization's batches in one of the ``final``
        statuses received before ``cutoff``; how many went."""
        params = {"org": org_id, "cutoff": cutoff, "final": [str(s) for s in final], "n": limit}
        result = await self.session.execute(_DELETE_EXPIRED, params)
        return int(getattr(result, "rowcount", 0) or 0)

    async def mark_queued(self, batch_id: uuid.UUID) -> bool:
        result = await self.session.execute(
            _MARK_QUEUED,
            {
                "id": batch_id,
                "queued": BatchStatus.QUEUED.value,
                "received": BatchStatus.RECEIVED.value,
            },
        )
        return bool(getattr(result, "rowcount", 0))

    async def get_for_org(self, org_id: uuid.UUID, batch_id: uuid.UUID) -> IngestBatch | None:
        query = select(IngestBatch).where(
            col(IngestBatch.id) == batch_id, col(IngestBatch.org_id) == org_id
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def get_for_update(self, batch_id: uuid.UUID) -> IngestBatch | None:
        query = (
            select(IngestBatch)
            .where(col(IngestBatch.id) == batch_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def org_filters(self, org_id: uuid.UUID) -> OrgFilterRow | None:
        query = select(
            col(Organization.retention_days),
            col(Organization.max_clock_skew_s),
            col(Organization.max_speed_kmh),
            col(Organization.ingest_rate_limit),
        ).where(col(Organization.id) == org_id)
        row = (await self.session.execute(query)).one_or_none()
        return None if row is None else OrgFilterRow(*row)

    async def devices_by_unique_id(
        self, org_id: uuid.UUID, unique_ids: list[str]
    ) -> list[DeviceRow]:
        """The organization's devices among ``unique_ids`` (another organization's: none)."""
        if not unique_ids:
            return []
        # One array parameter: the statement stays the same whatever the batch size.
        result = await self.session.execute(_DEVICES, {"org_id": org_id, "unique_ids": unique_ids})
        return [DeviceRow(*row) for row in result.all()]

    async def claim(self, batch_id: uuid.UUID, holder: str, lease_s: float, now: datetime) -> bool:
        """Mark the batch ``processing`` under ``holder``'s lease (one more attempt); False
        when it is processed (found after waiting for a live processing transaction)."""
        unprocessed = (
            select(col(IngestBatch.id))
            .where(
                col(IngestBatch.id) == batch_id, col(IngestBatch.status) != BatchStatus.PROCESSED
            )
            .with_for_update()
            .scalar_subquery()
        )
        claimed = await self.session.execute(
            update(IngestBatch)
            .where(col(IngestBatch.id) == unprocessed)
            .values(
                status=BatchStatus.PROCESSING,
                attempts=col(IngestBatch.attempts) + 1,
                processing_started_at=now,
                lease_holder=holder,
                lease_expires_at=_lease_end(lease_s),
            )
            .returning(col(IngestBatch.id))
        )
        return claimed.scalar_one_or_none() is not None

    async def renew_lease(self, batch_id: uuid.UUID, holder: str, lease_s: float) -> bool:
        """Move ``holder``'s lease to ``lease_s`` from now; False once it holds none."""
        renewed = await self.session.execute(
            update(IngestBatch)
            .where(
                col(IngestBatch.id) == batch_id,
                col(IngestBatch.lease_holder) == holder,
                col(IngestBatch.status) == BatchStatus.PROCESSING,
            )
            .values(lease_expires_at=_lease_end(lease_s))
            .returning(col(IngestBatch.id))
        )
        return renewed.scalar_one_or_none() is not None

    async def lock_for_processing(self, batch_id: uuid.UUID) -> IngestBatch | None:
        """The batch, re-read and locked ``FOR KEY SHARE``: another claim (``FOR UPDATE``)
        waits for the transaction, while the lease's renewals go through."""
        query = (
            select(IngestBatch)
            .where(col(IngestBatch.id) == batch_id)
            .with_for_update(read=True, key_share=True)
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(query)).scalars().first()

    async def mark_failed(self, batch_id: uuid.UUID, holder: str, error: str) -> bool:
        """``failed`` with the error, its lease ended, unless it is processed or another
        holder's; whether it was marked."""
        result = await self.session.execute(
            update(IngestBatch)
            .where(
                col(IngestBatch.id) == batch_id,
                col(IngestBatch.status) != BatchStatus.PROCESSED,
                or_(
                    col(IngestBatch.lease_holder) == holder,
                    col(IngestBatch.lease_holder).is_(None),
                ),
            )
            .values(status=BatchStatus.FAILED, last_error=error[:2000], **RELEASED)
        )
        return bool(getattr(result, "rowcount", 0))

    async def requeue_stale(
        self, pending_after: timedelta, lease_s: float, limit: int = 1000
    ) -> Sequence[Row[uuid.UUID, BatchStatus, str | None]]:
        """Mark ``queued`` as of now, lease cleared, the batches to send again: ``received``
        and ``queued`` ones whose last publish attempt is ``pending_after`` old, and
        ``processing`` ones whose lease has expired; returns each one's id, former status
        and holder, oldest first. Rows locked by a live processing transaction or a claim are
        skipped: their holder is alive whatever its lease says."""
        now = func.now()
        status = col(IngestBatch.status)
        lease_expires_at = col(IngestBatch.lease_expires_at)
        last_publish = func.coalesce(col(IngestBatch.queued_at), col(IngestBatch.received_at))
        pending = status.in_([BatchStatus.RECEIVED, BatchStatus.QUEUED]) & (
            last_publish < now - pending_after
        )
        expired = (status == BatchStatus.PROCESSING) & (
            (lease_expires_at < now)
            # Claimed by a worker from before leases (a rolling upgrade): as if leased from then.
            | (
                lease_expires_at.is_(None)
                & (col(IngestBatch.processing_started_at) < now - timedelta(seconds=lease_s))
            )
        )
        found = (
            await self.session.execute(
                select(col(IngestBatch.id), status, col(IngestBatch.lease_holder))
                .where(pending | expired)
                .order_by(col(IngestBatch.received_at))
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        if found:
            await self.session.execute(
                update(IngestBatch)
                .where(col(IngestBatch.id).in_([batch_id for batch_id, _, _ in found]))
                .values(status=BatchStatus.QUEUED, queued_at=now, **RELEASED)
            )
        return found

    async def waiting_by_status(
        self, statuses: Sequence[BatchStatus]
    ) -> list[tuple[BatchStatus, int, Any]]:
        """``(status, batches, seconds since the oldest one was received)`` of each of
        ``statuses`` that has batches: one query on the ``(status, received_at)`` index,
        timed by the database's clock."""
        rows = (
            await self.session.execute(_WAITING, {"statuses": [str(s) for s in statuses]})
        ).all()
        return [(BatchStatus(status), int(count), age_s) for status, count, age_s in rows]

    async def get(self, batch_id: uuid.UUID, *, for_update: bool = False) -> IngestBatch | None:
        """A batch of any organization."""
        return await find_by_id(self.session, IngestBatch, batch_id, for_update=for_update)

    async def page(
        self, filters: BatchFilters, *, exclude_source: BatchSource | None = None
    ) -> paging.PageResult[IngestBatch]:
        """A keyset page by ``received_at`` of every organization's batches matching
        ``filters``, without ``exclude_source``'s when given."""
        query = select(IngestBatch).where(*_conditions(filters))
        if exclude_source is not None:
            query = query.where(col(IngestBatch.source) != exclude_source)
        return await paging.sorted_page(self.session, query, IngestBatch, filters)

    async def osmand_by_device(self, filters: BatchFilters, *, limit: int) -> Sequence[Any]:
        """The OsmAnd batches matching ``filters`` summed up per organization and stored
        device or sent unique id, latest first, at most ``limit`` rows: ``(org_id,
        device_id, sent_id, batches, accepted, rejected, last_received_at, failed,
        last_failed_id)``."""
        batch = IngestBatch
        stored = col(batch.device_ids).op("->>")(0)
        sent = func.nullif(
            col(batch.rejected_items).op("->")(0).op("->")("item").op("->>")("device_id"), ""
        )
        failed = col(batch.status) == BatchStatus.FAILED
        last = func.max(col(batch.received_at))
        columns: list[Any] = [
            col(batch.org_id),
            stored.label("device_id"),
            sent.label("sent_id"),
            func.count().label("batches"),
            func.coalesce(func.sum(col(batch.accepted)), 0).label("accepted"),
            func.coalesce(func.sum(col(batch.rejected)), 0).label("rejected"),
            last.label("last_received_at"),
            func.count().filter(failed).label("failed"),
            func.array_agg(aggregate_order_by(col(batch.id), col(batch.received_at).desc()))
            .filter(failed)[1]
            .label("last_failed_id"),
        ]
        query = (
            select(*columns)
            .where(col(batch.source) == BatchSource.OSMAND, *_conditions(filters))
            .group_by(col(batch.org_id), stored, sent)
            .order_by(last.desc())
            .limit(limit)
        )
        rows = (await self.session.execute(query)).all()
        return rows

    async def failed_for_org(self, org_id: uuid.UUID, *, limit: int) -> Sequence[uuid.UUID]:
        """The ids of the organization's failed batches, oldest first, locked (those another
        transaction holds skipped); ids only: a batch row can be megabytes."""
        query = (
            select(col(IngestBatch.id))
            .where(IngestBatch.org_id == org_id, IngestBatch.status == BatchStatus.FAILED)
            .order_by(col(IngestBatch.received_at), col(IngestBatch.id))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return (await self.session.scalars(query)).all()
