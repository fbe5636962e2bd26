"""Queries on ``ingest_batches``: the write path's statements are hand-written SQL (one round
trip each, JSON serialized once by orjson); reads go through the table model."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain.ingest_batches.models import BatchSource, BatchStatus, IngestBatch
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.positions.repository import INSERTED_CTE, NewPositions


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
# statement, so the errors cross the wire once and the counts cost no extra round trip.
_STORE_AND_FINISH = text(
    f"""
    WITH {INSERTED_CTE},
    counted AS (
        SELECT count(*) AS n,
               coalesce(jsonb_agg(DISTINCT device_id::text), '[]'::jsonb) AS devices
        FROM inserted
    )
    UPDATE ingest_batches AS b
    SET accepted = counted.n,
        duplicates = CAST(:valid AS integer) - counted.n,
        device_ids = counted.devices,
        response = jsonb_build_object('batch_id', b.id, 'accepted', counted.n,
                                      'rejected', b.rejected,
                                      'duplicates', CAST(:valid AS integer) - counted.n,
                                      'errors', b.errors)
    FROM counted
    WHERE b.id = :batch_id
    RETURNING b.response
    """  # noqa: S608 - constant SQL
)

# Only a batch still `received` becomes `queued`: a worker may already have started it.
_MARK_QUEUED = text(
    """
    UPDATE ingest_batches SET status = :queued, queued_at = now()
    WHERE id = :id AND status = :received
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
        self, batch_id: uuid.UUID, org_id: uuid.UUID, rows: NewPositions
    ) -> dict[str, Any]:
        """Insert the batch's new positions and store its counts; return its answer."""
        result = await self.session.execute(
            _STORE_AND_FINISH,
            {"org_id": org_id, "batch_id": batch_id, "rows": rows.to_json(), "valid": len(rows)},
        )
        response: dict[str, Any] = result.scalar_one()
        return response

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
