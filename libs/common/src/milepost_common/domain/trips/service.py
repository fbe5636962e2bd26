"""Writing trips, stops and motion checkpoints, as the worker materializes them.

Rows are keyed by ``(device_id, start_time)``: a recomputation updates them in place (their
``id`` survives) and deletes the ones it no longer produces. Read endpoints live elsewhere.

:func:`materialize_segments` is the use case: a replay's trips and stops (plain values; the
motion machine that makes them is the worker's) replace the stored ones of its scope, and
the webhook events of what changed are derived from the stored rows, never from the replay
alone: a trip is ``started`` when no row had its start, ``ended`` when its row was open (or
new); a stop ``started`` when no row had its start. Event ids are stable
(``webhooks/events.py``), so an event derived again is written once.
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
from milepost_common.domain.webhooks import events as webhook_events

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


@dataclass(frozen=True, slots=True)
class TripSpan:
    """A trip as a replay produced it (``end_time`` None: still open)."""

    start_time: datetime
    end_time: datetime | None
    start_lat: float
    start_lon: float
    end_lat: float
    end_lon: float
    distance_m: float
    duration_s: float
    avg_speed: float
    max_speed: float


@dataclass(frozen=True, slots=True)
class StopSpan:
    """A stop as a replay produced it (``end_time`` None: still open)."""

    start_time: datetime
    end_time: datetime | None
    lat: float
    lon: float
    duration_s: float


@dataclass(frozen=True, slots=True)
class DeviceSegments:
    """A replay's trips and stops of one device's tenure: they replace the stored ones
    starting at or after ``trips_from`` / ``stops_from`` (None: all of the tenure's)."""

    tenure: Tenure
    vehicle_name: str | None
    trips_from: datetime | None
    stops_from: datetime | None
    trips: Sequence[TripSpan]
    stops: Sequence[StopSpan]


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


def _trip_row(tenure: Tenure, trip: TripSpan) -> dict[str, Any]:
    return {
        "org_id": tenure.org_id,
        "device_id": tenure.device_id,
        "start_time": trip.start_time,
        "end_time": trip.end_time,
        "start_lat": trip.start_lat,
        "start_lon": trip.start_lon,
        "end_lat": trip.end_lat,
        "end_lon": trip.end_lon,
        "distance_m": trip.distance_m,
        "duration_s": trip.duration_s,
        "avg_speed": trip.avg_speed,
        "max_speed": trip.max_speed,
    }


def _stop_row(tenure: Tenure, stop: StopSpan) -> dict[str, Any]:
    return {
        "org_id": tenure.org_id,
        "device_id": tenure.device_id,
        "start_time": stop.start_time,
        "end_time": stop.end_time,
        "lat": stop.lat,
        "lon": stop.lon,
        "duration_s": stop.duration_s,
    }


def _unchanged(existing: Trip | Stop | None, row: Mapping[str, Any], names: Sequence[str]) -> bool:
    return existing is not None and all(getattr(existing, n) == row[n] for n in names)


SegmentKey = tuple[uuid.UUID, datetime]


async def materialize_segments(
    session: AsyncSession, devices: Sequence[DeviceSegments]
) -> list[webhook_events.Event]:
    """Replace the devices' trips and stops in their replays' scopes (rows kept by key, so
    ids survive); returns the events of the trips that started or ended and the stops that
    started. Idempotent: the same replay again changes nothing and derives no new event."""
    trips = await list_trips_from(session, {d.tenure: d.trips_from for d in devices})
    stops = await list_stops_from(session, {d.tenure: d.stops_from for d in devices})
    old_trips = {(t.device_id, t.start_time): t for t in trips}
    old_stops = {(s.device_id, s.start_time): s for s in stops}
    trip_rows: list[dict[str, Any]] = []
    stop_rows: list[dict[str, Any]] = []
    keep_trips: set[uuid.UUID] = set()
    keep_stops: set[uuid.UUID] = set()
    started: dict[SegmentKey, str | None] = {}
    ended: dict[SegmentKey, str | None] = {}
    stop_started: dict[SegmentKey, str | None] = {}
    for item in devices:
        name = item.vehicle_name
        device_id = item.tenure.device_id
        for trip in item.trips:
            row = _trip_row(item.tenure, trip)
            key = (device_id, trip.start_time)
            old_trip = old_trips.get(key)
            if old_trip is not None:
                keep_trips.add(old_trip.id)
            if not _unchanged(old_trip, row, TRIP_FIELDS):
                trip_rows.append(row)
            if old_trip is None:
                started[key] = name
            if trip.end_time is not None and (old_trip is None or old_trip.end_time is None):
                ended[key] = name
        for stop in item.stops:
            row = _stop_row(item.tenure, stop)
            key = (device_id, stop.start_time)
            old_stop = old_stops.get(key)
            if old_stop is not None:
                keep_stops.add(old_stop.id)
            else:
                stop_started[key] = name
            if not _unchanged(old_stop, row, STOP_FIELDS):
                stop_rows.append(row)
    await delete_trips(session, (t.id for t in trips if t.id not in keep_trips))
    await delete_stops(session, (s.id for s in stops if s.id not in keep_stops))
    written_trips = await upsert_trips(session, trip_rows)
    written_stops = await upsert_stops(session, stop_rows)

    out: list[webhook_events.Event] = []
    for row_trip in sorted(written_trips, key=lambda t: t.start_time):
        key = (row_trip.device_id, row_trip.start_time)
        if key in started:
            out.append(webhook_events.trip_started(row_trip, started[key]))
        if key in ended:
            out.append(
                webhook_events.trip_ended(
                    row_trip, ended[key], webhook_events.TripEndReason.STOPPED
                )
            )
    for row_stop in sorted(written_stops, key=lambda s: s.start_time):
        key = (row_stop.device_id, row_stop.start_time)
        if key in stop_started:
            out.append(webhook_events.stop_started(row_stop, stop_started[key]))
    return out


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
