"""Writing trips, stops and motion checkpoints, as the worker materializes them.

Rows are keyed by ``(device_id, start_time)``: a recomputation updates them in place (their
``id`` survives) and deletes the ones it no longer produces. Read endpoints live elsewhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, false, func, or_, true, update
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


@dataclass(frozen=True, slots=True)
class Tenure:
    """A device in one organization from ``since`` on (None: since it was registered): the
    only rows the worker may read, replace or delete for it."""

    device_id: uuid.UUID
    org_id: uuid.UUID
    since: datetime | None

    def floor(self, moment: datetime | None) -> datetime | None:
        """The later of ``moment`` and the tenure's start (None: no bound)."""
        if moment is None or self.since is None:
            return moment or self.since
        return max(moment, self.since)


def _scoped(
    table: type[Trip] | type[Stop], scopes: Mapping[Tenure, datetime | None]
) -> ColumnElement[bool]:
    clauses = []
    for tenure, start in scopes.items():
        clause = and_(col(table.device_id) == tenure.device_id, col(table.org_id) == tenure.org_id)
        if (lower := tenure.floor(start)) is not None:
            clause = and_(clause, col(table.start_time) >= lower)
        clauses.append(clause)
    return or_(false(), *clauses)


async def list_trips_from(
    session: AsyncSession, scopes: Mapping[Tenure, datetime | None]
) -> list[Trip]:
    """Each device's trips in its tenure starting at or after its time (None: all of them)."""
    if not scopes:
        return []
    rows = await session.execute(select(Trip).where(_scoped(Trip, scopes)))
    return list(rows.scalars())


async def list_stops_from(
    session: AsyncSession, scopes: Mapping[Tenure, datetime | None]
) -> list[Stop]:
    if not scopes:
        return []
    rows = await session.execute(select(Stop).where(_scoped(Stop, scopes)))
    return list(rows.scalars())


async def upsert_trips(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> list[Trip]:
    """Insert or update by ``(device_id, start_time)``; an existing row keeps its id. Returns
    the rows as written."""
    if not rows:
        return []
    stmt = insert(Trip).values([{"id": uuid.uuid4(), **r} for r in rows])
    upsert = stmt.on_conflict_do_update(
        constraint="uq_trips_device_start", set_={f: stmt.excluded[f] for f in TRIP_FIELDS}
    ).returning(Trip)
    written = await session.execute(
        select(Trip).from_statement(upsert).execution_options(populate_existing=True)
    )
    return list(written.scalars())


async def upsert_stops(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> list[Stop]:
    """``upsert_trips`` for stops."""
    if not rows:
        return []
    stmt = insert(Stop).values([{"id": uuid.uuid4(), **r} for r in rows])
    upsert = stmt.on_conflict_do_update(
        constraint="uq_stops_device_start", set_={f: stmt.excluded[f] for f in STOP_FIELDS}
    ).returning(Stop)
    written = await session.execute(
        select(Stop).from_statement(upsert).execution_options(populate_existing=True)
    )
    return list(written.scalars())


async def delete_trips(session: AsyncSession, ids: Iterable[uuid.UUID]) -> None:
    ids = list(ids)
    if ids:
        await session.execute(delete(Trip).where(col(Trip.id).in_(ids)))


async def delete_stops(session: AsyncSession, ids: Iterable[uuid.UUID]) -> None:
    ids = list(ids)
    if ids:
        await session.execute(delete(Stop).where(col(Stop.id).in_(ids)))


async def close_open_segments(
    session: AsyncSession, device_id: uuid.UUID, org_id: uuid.UUID, last_fix: datetime | None
) -> list[Trip]:
    """End the organization's open trip and stop of the device at its last fix (a transfer
    ends the tenure as if the device had gone silent for good); returns the trip it ended."""
    if last_fix is None:
        return []
    duration = col(Trip.duration_s)
    ended = (
        update(Trip)
        .where(
            col(Trip.device_id) == device_id,
            col(Trip.org_id) == org_id,
            col(Trip.end_time).is_(None),
        )
        # An open trip's duration already runs to its last fix.
        .values(end_time=col(Trip.start_time) + func.make_interval(0, 0, 0, 0, 0, 0, duration))
        .returning(Trip)
    )
    trips = await session.execute(
        select(Trip).from_statement(ended).execution_options(populate_existing=True)
    )
    closed = list(trips.scalars())
    await session.execute(
        update(Stop)
        .where(
            col(Stop.device_id) == device_id,
            col(Stop.org_id) == org_id,
            col(Stop.end_time).is_(None),
            col(Stop.start_time) <= last_fix,
        )
        .values(
            end_time=last_fix,
            duration_s=func.extract("epoch", last_fix - col(Stop.start_time)),
        )
    )
    return closed


def _checkpoints_of(tenure: Tenure) -> ColumnElement[bool]:
    clause = and_(
        col(MotionCheckpoint.device_id) == tenure.device_id,
        col(MotionCheckpoint.org_id) == tenure.org_id,
    )
    if tenure.since is not None:
        clause = and_(clause, col(MotionCheckpoint.anchor_time) >= tenure.since)
    return clause


async def find_checkpoint_before(
    session: AsyncSession, tenure: Tenure, before: datetime
) -> MotionCheckpoint | None:
    """The device's latest checkpoint of its tenure strictly before ``before``."""
    rows = await session.execute(
        select(MotionCheckpoint)
        .where(_checkpoints_of(tenure), col(MotionCheckpoint.anchor_time) < before)
        .order_by(col(MotionCheckpoint.anchor_time).desc())
        .limit(1)
    )
    return rows.scalars().first()


async def replace_checkpoints(
    session: AsyncSession,
    tenure: Tenure,
    after: datetime | None,
    checkpoints: Sequence[tuple[datetime, dict[str, Any]]],
) -> None:
    """Delete the tenure's checkpoints after ``after`` (None: all), then store these."""
    condition = col(MotionCheckpoint.anchor_time) > after if after is not None else true()
    await session.execute(delete(MotionCheckpoint).where(_checkpoints_of(tenure), condition))
    if checkpoints:
        stmt = insert(MotionCheckpoint).values(
            [
                {
                    "device_id": tenure.device_id,
                    "org_id": tenure.org_id,
                    "anchor_time": t,
                    "state": state,
                }
                for t, state in checkpoints
            ]
        )
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["device_id", "anchor_time"], set_={"state": stmt.excluded.state}
            )
        )
