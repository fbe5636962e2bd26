"""Operator-side reads of ingest batches: filter every organization's, find the failed,
sum up a device's OsmAnd fixes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Text, cast, func, or_, text
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain import paging
from milepost_common.domain.base import get_by_id
from milepost_common.domain.devices.models import Device
from milepost_common.domain.ingest_batches.admin_schemas import (
    BatchFilters,
    BatchSort,
    OsmandDevice,
)
from milepost_common.domain.ingest_batches.errors import BatchNotFound
from milepost_common.domain.ingest_batches.models import BatchSource, BatchStatus, IngestBatch
from milepost_common.domain.organizations import repository as org_repository

MAX_REPLAY_ALL = 500
# A rejected item keeps the fix as sent: its device_id is the tracker's unique id.
_REJECTED_DEVICE = text(
    "EXISTS (SELECT 1 FROM jsonb_array_elements(ingest_batches.rejected_items) AS r "
    "WHERE r->'item'->>'device_id' ILIKE :device_pattern ESCAPE '\\')"
)


async def get_batch(
    session: AsyncSession, batch_id: uuid.UUID, *, for_update: bool = False
) -> IngestBatch:
    """A batch of any organization. Raises BatchNotFound."""
    return await get_by_id(session, IngestBatch, batch_id, BatchNotFound, for_update=for_update)


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


async def list_batches(
    session: AsyncSession,
    filters: BatchFilters,
    *,
    exclude_source: BatchSource | None = None,
) -> paging.PageResult[IngestBatch]:
    """A keyset page by ``received_at`` filtered by organization (id or name), device (name
    or unique id), source, status, rejected items and time; without ``exclude_source``'s
    batches when given (the console lists OsmAnd fixes summed up by device instead)."""
    query = select(IngestBatch).where(*_conditions(filters))
    if exclude_source is not None:
        query = query.where(col(IngestBatch.source) != exclude_source)
    paged = paging.keyset(
        query,
        col(IngestBatch.received_at),
        col(IngestBatch.id),
        limit=filters.limit,
        cursor=filters.cursor,
        descending=filters.sort is BatchSort.RECEIVED_AT_DESC,
    )
    rows = (await session.scalars(paged)).all()
    return paging.page_of(rows, filters.limit, lambda b: (b.received_at, b.id))


async def osmand_by_device(
    session: AsyncSession, filters: BatchFilters, *, limit: int = 50
) -> list[OsmandDevice]:
    """The OsmAnd batches matching ``filters`` summed up per organization and device (a
    rejected fix counts for the unique id it was sent with), latest first, at most ``limit``
    devices: how many, when the last came, how many failed and the latest failed one."""
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
    rows = (await session.execute(query)).all()
    ids = {uuid.UUID(r.device_id) for r in rows if r.device_id}
    devices = (
        {
            d.id: d
            for d in (await session.scalars(select(Device).where(col(Device.id).in_(ids)))).all()
        }
        if ids
        else {}
    )
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


async def failed_batches(
    session: AsyncSession, org_id: uuid.UUID, *, limit: int = MAX_REPLAY_ALL
) -> Sequence[IngestBatch]:
    """The organization's failed batches, oldest first, locked for a replay."""
    query = (
        select(IngestBatch)
        .where(IngestBatch.org_id == org_id, IngestBatch.status == BatchStatus.FAILED)
        .order_by(col(IngestBatch.received_at), col(IngestBatch.id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (await session.scalars(query)).all()
