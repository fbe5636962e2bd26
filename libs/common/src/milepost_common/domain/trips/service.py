"""Writing trips, stops and motion checkpoints, as the worker materializes them.

Rows are keyed by ``(device_id, start_time)``: a recomputation updates them in place (their
``id`` survives) and deletes the ones it no longer produces. Read endpoints live elsewhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, false, or_, true
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain.trips.models import MotionCheckpoint, Stop, Trip

TRIP_FIELDS = (
    "end_time",
    "start_lat",
    "start_lon",
    "end_lat",
    "end_lon",
    "distance_m",
    "duration_s",
    "avg_speed",
    "max_speed",
)
STOP_FIELDS = ("end_time", "lat", "lon", "duration_s")


def _scoped(
    device: Any, start: Any, scopes: Mapping[uuid.UUID, datetime | None]
) -> ColumnElement[bool]:
    clauses = [
        and_(device == d, start >= s) if s is not None else device == d for d, s in scopes.items()
    ]
    return or_(false(), *clauses) if clauses else false()


async def list_trips_from(
    session: AsyncSession, scopes: Mapping[uuid.UUID, datetime | None]
) -> list[Trip]:
    """Each device's trips starting at or after its time (None: all of them)."""
    if not scopes:
        return []
    rows = await session.execute(
        select(Trip).where(_scoped(col(Trip.device_id), col(Trip.start_time), scopes))
    )
    return list(rows.scalars())


async def list_stops_from(
    session: AsyncSession, scopes: Mapping[uuid.UUID, datetime | None]
) -> list[Stop]:
    if not scopes:
        return []
    rows = await session.execute(
        select(Stop).where(_scoped(col(Stop.device_id), col(Stop.start_time), scopes))
    )
    return list(rows.scalars())


async def upsert_trips(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert or update by ``(device_id, start_time)``; an existing row keeps its id."""
    if not rows:
        return
    stmt = insert(Trip).values([{"id": uuid.uuid4(), **r} for r in rows])
    await session.execute(
        stmt.on_conflict_do_update(
            constraint="uq_trips_device_start", set_={f: stmt.excluded[f] for f in TRIP_FIELDS}
        )
    )


async def upsert_stops(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    if not rows:
        return
    stmt = insert(Stop).values([{"id": uuid.uuid4(), **r} for r in rows])
    await session.execute(
        stmt.on_conflict_do_update(
            constraint="uq_stops_device_start", set_={f: stmt.excluded[f] for f in STOP_FIELDS}
        )
    )


async def delete_trips(session: AsyncSession, ids: Iterable[uuid.UUID]) -> None:
    ids = list(ids)
    if ids:
        await session.execute(delete(Trip).where(col(Trip.id).in_(ids)))


async def delete_stops(session: AsyncSession, ids: Iterable[uuid.UUID]) -> None:
    ids = list(ids)
    if ids:
        await session.execute(delete(Stop).where(col(Stop.id).in_(ids)))


async def find_checkpoint_before(
    session: AsyncSession, device_id: uuid.UUID, before: datetime
) -> MotionCheckpoint | None:
    """The device's latest checkpoint strictly before ``before``."""
    rows = await session.execute(
        select(MotionCheckpoint)
        .where(
            col(MotionCheckpoint.device_id) == device_id, col(MotionCheckpoint.anchor_time) < before
        )
        .order_by(col(MotionCheckpoint.anchor_time).desc())
        .limit(1)
    )
    return rows.scalars().first()


async def replace_checkpoints(
    session: AsyncSession,
    device_id: uuid.UUID,
    org_id: uuid.UUID,
    after: datetime | None,
    checkpoints: Sequence[tuple[datetime, dict[str, Any]]],
) -> None:
    """Delete the device's checkpoints after ``after`` (None: all), then store these."""
    condition = col(MotionCheckpoint.anchor_time) > after if after is not None else true()
    await session.execute(
        delete(MotionCheckpoint).where(col(MotionCheckpoint.device_id) == device_id, condition)
    )
    if checkpoints:
        stmt = insert(MotionCheckpoint).values(
            [
                {"device_id": device_id, "org_id": org_id, "anchor_time": t, "state": state}
                for t, state in checkpoints
            ]
        )
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["device_id", "anchor_time"], set_={"state": stmt.excluded.state}
            )
        )
