"""Statements on ``trips``, ``stops`` and ``motion_checkpoints``: the worker's writes (keyed
by ``(device_id, start_time)``, always within one device's tenure in one organization) and
the read side's pages.

A scope is ``(device_id, org_id, from, until)``: the device's rows of that organization
starting at or after ``from`` and before ``until`` (None: no bound).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, delete, false, func, or_, text, true, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain import paging
from milepost_common.domain.devices.repository import Named, TimelineRepository
from milepost_common.domain.trips.models import (
    STOP_FIELDS,
    TRIP_FIELDS,
    MotionCheckpoint,
    Stop,
    Trip,
)

Scope = tuple[uuid.UUID, uuid.UUID, datetime | None, datetime | None]
SegmentT = TypeVar("SegmentT", Trip, Stop)

# A device's latest checkpoint stays, however old: a late fix replays from it (a vehicle
# parked since before the cutoff would otherwise be replayed from its first kept fix).
_EXPIRED_CHECKPOINTS = text(
    "DELETE FROM motion_checkpoints WHERE (device_id, anchor_time) IN "
    "(SELECT device_id, anchor_time FROM motion_checkpoints c "
    "WHERE org_id = :org AND anchor_time < :cutoff AND EXISTS (SELECT 1 FROM motion_checkpoints "
    "n WHERE n.device_id = c.device_id AND n.anchor_time > c.anchor_time) LIMIT :n)"
)


def _scoped(table: type[Trip] | type[Stop], scopes: Iterable[Scope]) -> ColumnElement[bool]:
    clauses = []
    for device_id, org_id, lower, upper in scopes:
        clause = and_(col(table.device_id) == device_id, col(table.org_id) == org_id)
        if lower is not None:
            clause = and_(clause, col(table.start_time) >= lower)
        if upper is not None:
            clause = and_(clause, col(table.start_time) < upper)
        clauses.append(clause)
    return or_(false(), *clauses)


class _SegmentRepository(TimelineRepository[SegmentT]):
    """What trips and stops share: the read side's page, and the worker's scoped reads,
    upserts by ``(device_id, start_time)`` and deletes."""

    time_field = "start_time"
    still_open = "end_time IS NULL"
    constraint: str
    fields: tuple[str, ...]

    async def page_for_org(
        self,
        org_id: uuid.UUID,
        vehicle_id: uuid.UUID | None,
        window: paging.Window,
        page: paging.PageRequest,
        *,
        ending_after: datetime | None = None,
    ) -> paging.PageResult[Named[SegmentT]]:
        """The organization's rows (of one vehicle or all) starting in ``window``, still
        open or ending after ``ending_after`` when given, each with its vehicle's name."""
        narrowed = None
        if ending_after is not None:
            end_time = col(self.model.end_time)
            narrowed = select(self.model).where(or_(end_time.is_(None), end_time > ending_after))
        return await self.timeline_page(org_id, vehicle_id, window, page, narrowed)

    async def list_from(self, scopes: Sequence[Scope]) -> list[SegmentT]:
        if not scopes:
            return []
        rows = await self.session.execute(select(self.model).where(_scoped(self.model, scopes)))
        return list(rows.scalars())

    async def upsert(self, rows: Sequence[Mapping[str, Any]]) -> list[SegmentT]:
        """Insert or update by ``(device_id, start_time)``; an existing row keeps its id.
        Returns the rows as written."""
        if not rows:
            return []
        stmt = insert(self.model).values([{"id": uuid.uuid4(), **r} for r in rows])
        upsert = stmt.on_conflict_do_update(
            constraint=self.constraint, set_={f: stmt.excluded[f] for f in self.fields}
        ).returning(self.model)
        written = await self.session.execute(
            select(self.model).from_statement(upsert).execution_options(populate_existing=True)
        )
        return list(written.scalars())

    async def delete_ids(self, ids: Iterable[uuid.UUID]) -> None:
        ids = list(ids)
        if ids:
            await self.session.execute(delete(self.model).where(col(self.model.id).in_(ids)))


class TripRepository(_SegmentRepository[Trip]):
    model = Trip
    constraint = "uq_trips_device_start"
    fields = TRIP_FIELDS

    async def close_open(self, device_id: uuid.UUID, org_id: uuid.UUID) -> list[Trip]:
        """End the organization's open trip of the device at its last fix (an open trip's
        duration already runs to it); the trips ended."""
        duration = col(Trip.duration_s)
        ended = (
            update(Trip)
            .where(
                col(Trip.device_id) == device_id,
                col(Trip.org_id) == org_id,
                col(Trip.end_time).is_(None),
            )
            .values(end_time=col(Trip.start_time) + func.make_interval(0, 0, 0, 0, 0, 0, duration))
            .returning(Trip)
        )
        trips = await self.session.execute(
            select(Trip).from_statement(ended).execution_options(populate_existing=True)
        )
        return list(trips.scalars())


class StopRepository(_SegmentRepository[Stop]):
    model = Stop
    constraint = "uq_stops_device_start"
    fields = STOP_FIELDS

    async def close_open(self, device_id: uuid.UUID, org_id: uuid.UUID, last_fix: datetime) -> None:
        """End the organization's open stop of the device at ``last_fix``."""
        await self.session.execute(
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


class MotionCheckpointRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def delete_expired(self, org_id: uuid.UUID, cutoff: datetime, *, limit: int) -> int:
        """Up to ``limit`` of the organization's checkpoints anchored before ``cutoff``; how
        many went."""
        result = await self.session.execute(
            _EXPIRED_CHECKPOINTS, {"org": org_id, "cutoff": cutoff, "n": limit}
        )
        return int(getattr(result, "rowcount", 0) or 0)

    @staticmethod
    def _of(device_id: uuid.UUID, org_id: uuid.UUID, since: datetime | None) -> Any:
        clause = and_(
            col(MotionCheckpoint.device_id) == device_id,
            col(MotionCheckpoint.org_id) == org_id,
        )
        if since is not None:
            clause = and_(clause, col(MotionCheckpoint.anchor_time) >= since)
        return clause

    async def find_before(
        self, device_id: uuid.UUID, org_id: uuid.UUID, since: datetime | None, before: datetime
    ) -> MotionCheckpoint | None:
        """The latest checkpoint in ``[since, before)``."""
        rows = await self.session.execute(
            select(MotionCheckpoint)
            .where(self._of(device_id, org_id, since), col(MotionCheckpoint.anchor_time) < before)
            .order_by(col(MotionCheckpoint.anchor_time).desc())
            .limit(1)
        )
        return rows.scalars().first()

    async def states_between(
        self,
        device_id: uuid.UUID,
        org_id: uuid.UUID,
        since: datetime | None,
        after: datetime,
        upto: datetime,
    ) -> list[tuple[datetime, dict[str, Any]]]:
        """The checkpoints anchored in ``(after, upto]``, with their states."""
        rows = await self.session.execute(
            select(col(MotionCheckpoint.anchor_time), col(MotionCheckpoint.state)).where(
                self._of(device_id, org_id, since),
                col(MotionCheckpoint.anchor_time) > after,
                col(MotionCheckpoint.anchor_time) <= upto,
            )
        )
        return [(anchor, state) for anchor, state in rows]

    async def replace(
        self,
        device_id: uuid.UUID,
        org_id: uuid.UUID,
        since: datetime | None,
        after: datetime | None,
        upto: datetime | None,
        checkpoints: Sequence[tuple[datetime, dict[str, Any]]],
    ) -> None:
        """Delete the checkpoints at or after ``since``, after ``after`` and up to ``upto``
        (None: no bound), then store these."""
        later = col(MotionCheckpoint.anchor_time) > after if after is not None else true()
        earlier = col(MotionCheckpoint.anchor_time) <= upto if upto is not None else true()
        await self.session.execute(
            delete(MotionCheckpoint).where(self._of(device_id, org_id, since), later, earlier)
        )
        if checkpoints:
            stmt = insert(MotionCheckpoint).values(
                [
                    {"device_id": device_id, "org_id": org_id, "anchor_time": t, "state": state}
                    for t, state in checkpoints
                ]
            )
            await self.session.execute(
                stmt.on_conflict_do_update(
                    index_elements=["device_id", "anchor_time"],
                    set_={"state": stmt.excluded.state},
                )
            )
