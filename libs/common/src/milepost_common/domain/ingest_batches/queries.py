"""Operator-side reads of ingest batches: filter every organization's, find the failed."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain import paging
from milepost_common.domain.base import get_by_id
from milepost_common.domain.ingest_batches.admin_schemas import BatchFilters, BatchSort
from milepost_common.domain.ingest_batches.errors import BatchNotFound
from milepost_common.domain.ingest_batches.models import BatchStatus, IngestBatch

MAX_REPLAY_ALL = 500


async def get_batch(
    session: AsyncSession, batch_id: uuid.UUID, *, for_update: bool = False
) -> IngestBatch:
    """A batch of any organization. Raises BatchNotFound."""
    return await get_by_id(session, IngestBatch, batch_id, BatchNotFound, for_update=for_update)


async def list_batches(
    session: AsyncSession, filters: BatchFilters
) -> paging.PageResult[IngestBatch]:
    """A keyset page by ``received_at`` filtered by organization, status and time."""
    query = select(IngestBatch)
    if filters.org_id is not None:
        query = query.where(IngestBatch.org_id == filters.org_id)
    if filters.status is not None:
        query = query.where(IngestBatch.status == filters.status)
    query = paging.time_window(
        query, col(IngestBatch.received_at), paging.Window(filters.from_, filters.to)
    )
    if filters.has_rejected is not None:
        rejected = col(IngestBatch.rejected)
        query = query.where(rejected > 0 if filters.has_rejected else rejected == 0)
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
