"""Statements on ``trips``, ``stops`` and ``motion_checkpoints``: the worker's writes (keyed
by ``(device_id, start_time)``, always within one device's tenure in one organization) and
the read side's pages.

A scope is ``(device_id, org_id, from)``: the device's rows of that organization starting at
or after ``from`` (None: all of them).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, false, func, or_, true, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain import paging
from milepost_common.domain.base import find_by_id
from milepost_common.domain.devices.models import Device
from milepost_common.domain.devices.repository import DeviceRepository, Named
from milepost_common.domain.trips.models import MotionCheckpoint, Stop, Trip

Scope = tuple[uuid.UUID, uuid.UUID, datetime | None]

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


def _scoped(table: type[Trip] | type[Stop], scopes: Iterable[Scope]) -> ColumnElement[bool]:
    clauses = []
    for device_id, org_id, lower in scopes:
        clause = and_(col(table.device_id) == device_id, col(table.org_id) == org_id)
        if lower is not None:
            clause = and_(clause, col(table.start_time) >= lower)
        clauses.append(clause)
    return or_(false(), *clauses)


def _open_or_ending_after(table: type[Trip] | type[Stop], moment: datetime | None) -> Any:
    """The rows still open or ending after ``moment`` (None: every row)."""
    if moment is None:
        return None
    return select(table).where(or_(col(table.end_time).is_(None), col(table.end_time) > moment))


class TripRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_for_org(self, org_id: uuid.UUID, trip_id: uuid.UUID) -> Trip | None:
        return await find_by_id(self.session, Trip, trip_id, org_id=org_id)

    async def device_of(self, trip: Trip) -> Device | None:
        """The trip's device, whichever organization holds it now."""
        return await self.session.get(Device, trip.device_id)

    async def page_for_org(
        self,
        org_id: uuid.UUID,
        vehicle_id: uuid.UUID | None,
        window: paging.Window,
        page: paging.PageRequest,
        *,
        ending_after: datetime | None = None,
    ) -> paging.PageResult[Named[Trip]]:
        """The organization's trips (of one vehicle or all) starting in ``window``, still
        open or ending after ``ending_after`` when given, each with its vehicle's name."""
        return await DeviceRepository(self.session).history_page(
            org_id,
            Trip,
            "start_time",
            vehicle_id,
            window,
            page,
            _open_or_ending_after(Trip, ending_after),
        )

    async def list_from(self, scopes: Sequence[Scope]) -> list[Trip]:
        if not scopes:
            return []
        rows = await self.session.execute(select(Trip).where(_scoped(Trip, scopes)))
        return list(rows.scalars())

    async def upsert(self, rows: Sequence[Mapping[str, Any]]) -> list[Trip]:
        """Insert or update by ``(device_id, start_time)``; an existing row keeps its id.
        Returns the rows as written."""
        if not rows:
            return []
        stmt = insert(Trip).values([{"id": uuid.uuid4(), **r} for r in rows])
        upsert = stmt.on_conflict_do_update(
            constraint="uq_trips_device_start", set_={f: stmt.excluded[f] for f in TRIP_FIELDS}
        ).returning(Trip)
        written = await self.session.execute(
            select(Trip).from_statement(upsert).execution_options(populate_existing=True)
        )
        return list(written.scalars())

    async def delete_ids(self, ids: Iterable[uuid.UUID]) -> None:
        ids = list(ids)
        if ids:
            await self.session.execute(delete(Trip).where(col(Trip.id).in_(ids)))

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


class StopRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def page_for_org(
        self,
        org_id: uuid.UUID,
        vehicle_id: uuid.UUID | None,
        window: paging.Window,
        page: paging.PageRequest,
        *,
        ending_after: datetime | None = None,
    ) -> paging.PageResult[Named[Stop]]:
        """``TripRepository.page_for_org`` for stops."""
        return await DeviceRepository(self.session).history_page(
            org_id,
            Stop,
            "start_time",
            vehicle_id,
            window,
            page,
            _open_or_ending_after(Stop, ending_after),
        )

    async def list_from(self, scopes: Sequence[Scope]) -> list[Stop]:
        if not scopes:
            return []
        rows = await self.session.execute(select(Stop).where(_scoped(Stop, scopes)))
        return list(rows.scalars())

    async def upsert(self, rows: Sequence[Mapping[str, Any]]) -> list[Stop]:
        """``TripRepository.upsert`` for stops."""
        if not rows:
            return []
        stmt = insert(Stop).values([{"id": uuid.uuid4(), **r} for r in rows])
        upsert = stmt.on_conflict_do_update(
            constraint="uq_stops_device_start", set_={f: stmt.excluded[f] for f in STOP_FIELDS}
        ).returning(Stop)
        written = await self.session.execute(
            select(Stop).from_statement(upsert).execution_options(populate_existing=True)
        )
        return list(written.scalars())

    async def delete_ids(self, ids: Iterable[uuid.UUID]) -> None:
        ids = list(ids)
        if ids:
            await self.session.execute(delete(Stop).where(col(Stop.id).in_(ids)))

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

    async def replace(
        self,
        device_id: uuid.UUID,
        org_id: uuid.UUID,
        since: datetime | None,
        after: datetime | None,
        checkpoints: Sequence[tuple[datetime, dict[str, Any]]],
    ) -> None:
        """Delete the checkpoints at or after ``since`` and after ``after`` (None: no bound),
        then store these."""
        condition = col(MotionCheckpoint.anchor_time) > after if after is not None else true()
        await self.session.execute(
            delete(MotionCheckpoint).where(self._of(device_id, org_id, since), condition)
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
