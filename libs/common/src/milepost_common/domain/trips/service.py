"""Trips and stops: the public API's and the map's reads, and their writes (with motion
checkpoints) as the worker materializes them.

Rows are keyed by ``(device_id, start_time)``: a recomputation updates them in place (their
``id`` survives) and deletes the ones it no longer produces.

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
from typing import Any, Literal, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain import paging
from milepost_common.domain.devices import names
from milepost_common.domain.devices import service as device_service
from milepost_common.domain.positions import service as position_service
from milepost_common.domain.principals import Principal
from milepost_common.domain.trips.errors import TripNotFound
from milepost_common.domain.trips.models import (
    STOP_FIELDS,
    TRIP_FIELDS,
    MotionCheckpoint,
    Stop,
    Trip,
)
from milepost_common.domain.trips.repository import (
    MotionCheckpointRepository,
    Scope,
    StopRepository,
    TripRepository,
)
from milepost_common.domain.trips.schemas import LineString, StopRead, TripDetail, TripRead
from milepost_common.domain.webhooks import events as webhook_events

ReadT = TypeVar("ReadT", TripRead, StopRead)

TRIP_SORTABLE = ("start_time", "distance_m", "duration_s", "max_speed")
STOP_SORTABLE = ("start_time", "duration_s")


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
    starting at or after ``trips_from`` / ``stops_from`` (None: all of the tenure's) and
    before ``until`` (None: no bound; a replay that converged there)."""

    tenure: Tenure
    vehicle_name: str | None
    trips_from: datetime | None
    stops_from: datetime | None
    trips: Sequence[TripSpan]
    stops: Sequence[StopSpan]
    until: datetime | None = None


SegmentScope = tuple[Tenure, datetime | None, datetime | None]  # the tenure, from, until


def _scopes(scopes: Iterable[SegmentScope]) -> list[Scope]:
    return [(t.device_id, t.org_id, t.floor(lower), upper) for t, lower, upper in scopes]


async def list_trips_from(session: AsyncSession, scopes: Iterable[SegmentScope]) -> list[Trip]:
    """Each device's trips in its tenure starting at or after its time (None: all of them)
    and before its ``until`` (None: no bound)."""
    return await TripRepository(session).list_from(_scopes(scopes))


async def list_stops_from(session: AsyncSession, scopes: Iterable[SegmentScope]) -> list[Stop]:
    """``list_trips_from`` for stops."""
    return await StopRepository(session).list_from(_scopes(scopes))


def _row(tenure: Tenure, span: TripSpan | StopSpan, fields: Sequence[str]) -> dict[str, Any]:
    """The span as its table's row: the key in the tenure, then what a replay writes."""
    key = {"org_id": tenure.org_id, "device_id": tenure.device_id, "start_time": span.start_time}
    return key | {name: getattr(span, name) for name in fields}


def _unchanged(existing: Trip | Stop | None, row: Mapping[str, Any], names: Sequence[str]) -> bool:
    return existing is not None and all(getattr(existing, n) == row[n] for n in names)


SegmentKey = tuple[uuid.UUID, datetime]


async def materialize_segments(
    session: AsyncSession, devices: Sequence[DeviceSegments]
) -> list[webhook_events.Event]:
    """Replace the devices' trips and stops in their replays' scopes (rows kept by key, so
    ids survive); returns the events of the trips that started or ended and the stops that
    started. Idempotent: the same replay again changes nothing and derives no new event."""
    trips = await list_trips_from(session, [(d.tenure, d.trips_from, d.until) for d in devices])
    stops = await list_stops_from(session, [(d.tenure, d.stops_from, d.until) for d in devices])
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
            row = _row(item.tenure, trip, TRIP_FIELDS)
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
            row = _row(item.tenure, stop, STOP_FIELDS)
            key = (device_id, stop.start_time)
            old_stop = old_stops.get(key)
            if old_stop is not None:
                keep_stops.add(old_stop.id)
            else:
                stop_started[key] = name
            if not _unchanged(old_stop, row, STOP_FIELDS):
                stop_rows.append(row)
    await TripRepository(session).delete_ids(t.id for t in trips if t.id not in keep_trips)
    await StopRepository(session).delete_ids(s.id for s in stops if s.id not in keep_stops)
    written_trips = await TripRepository(session).upsert(trip_rows)
    written_stops = await StopRepository(session).upsert(stop_rows)

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
    closed = await TripRepository(session).close_open(device_id, org_id)
    await StopRepository(session).close_open(device_id, org_id, last_fix)
    return closed


async def find_checkpoint_before(
    session: AsyncSession, tenure: Tenure, before: datetime
) -> MotionCheckpoint | None:
    """The device's latest checkpoint of its tenure strictly before ``before``."""
    return await MotionCheckpointRepository(session).find_before(
        tenure.device_id, tenure.org_id, tenure.since, before
    )


async def checkpoint_states(
    session: AsyncSession, tenure: Tenure, after: datetime, upto: datetime
) -> list[tuple[datetime, dict[str, Any]]]:
    """The tenure's checkpoints anchored in ``(after, upto]``, with their states."""
    return await MotionCheckpointRepository(session).states_between(
        tenure.device_id, tenure.org_id, tenure.since, after, upto
    )


async def replace_checkpoints(
    session: AsyncSession,
    tenure: Tenure,
    after: datetime | None,
    checkpoints: Sequence[tuple[datetime, dict[str, Any]]],
    upto: datetime | None = None,
) -> None:
    """Delete the tenure's checkpoints after ``after`` (None: all) up to ``upto`` (None: no
    bound), then store these."""
    await MotionCheckpointRepository(session).replace(
        tenure.device_id, tenure.org_id, tenure.since, after, upto, checkpoints
    )


async def delete_expired(
    session: AsyncSession,
    table: Literal["trips", "stops", "motion_checkpoints"],
    org_id: uuid.UUID,
    cutoff: datetime,
    *,
    limit: int,
) -> int:
    """Delete up to ``limit`` of the organization's trips, stops or checkpoints that start
    (are anchored) before ``cutoff``; how many went. Retention: no principal; repeat while
    it returns ``limit``."""
    repository: TripRepository | StopRepository | MotionCheckpointRepository
    if table == "trips":
        repository = TripRepository(session)
    elif table == "stops":
        repository = StopRepository(session)
    else:
        repository = MotionCheckpointRepository(session)
    return await repository.delete_expired(org_id, cutoff, limit=limit)


async def list_trips(
    session: AsyncSession,
    actor: Principal,
    vehicle_id: uuid.UUID | None,
    window: paging.Window,
    page: paging.PageRequest,
) -> paging.PageResult[TripRead]:
    """A keyset page of the organization's trips. Raises DeviceNotFound for a foreign
    ``vehicle_id``."""
    org_id = actor.require_org()
    return await list_org_segments(session, TripRead, org_id, vehicle_id, window, page)


async def list_stops(
    session: AsyncSession,
    actor: Principal,
    vehicle_id: uuid.UUID | None,
    window: paging.Window,
    page: paging.PageRequest,
) -> paging.PageResult[StopRead]:
    """``list_trips`` for stops."""
    org_id = actor.require_org()
    return await list_org_segments(session, StopRead, org_id, vehicle_id, window, page)


async def list_org_segments(
    session: AsyncSession,
    read: type[ReadT],
    org_id: uuid.UUID,
    vehicle_id: uuid.UUID | None,
    window: paging.Window,
    page: paging.PageRequest,
    *,
    ending_after: datetime | None = None,
) -> paging.PageResult[ReadT]:
    """A keyset page of an organization's trips (``read`` TripRead) or stops (StopRead),
    named by its id (operators read any), each with its vehicle's name; with
    ``ending_after``, only those still open or ending after it. Raises DeviceNotFound for a
    foreign ``vehicle_id``."""
    if vehicle_id is not None:
        await device_service.get_org_device(session, org_id, vehicle_id)
    segments = TripRepository(session) if read is TripRead else StopRepository(session)
    result = await segments.page_for_org(
        org_id, vehicle_id, window, page, ending_after=ending_after
    )
    return paging.PageResult(
        [names.read_as(read, item.row, item.vehicle_name) for item in result.items],
        result.next_cursor,
    )


async def get_trip(session: AsyncSession, actor: Principal, trip_id: uuid.UUID) -> TripDetail:
    """The trip with its route. Raises TripNotFound when missing or of another organization."""
    trips = TripRepository(session)
    trip = await trips.get_for_org(actor.require_org(), trip_id)
    if trip is None:
        raise TripNotFound()
    device = await trips.device_of(trip)
    read = names.read_as(TripRead, trip, names.name_of(device, trip.org_id, trip.start_time))
    return await with_route(session, trip.org_id, read)


async def with_route(session: AsyncSession, org_id: uuid.UUID, trip: TripRead) -> TripDetail:
    """The trip and its fixes in the organization (``[lon, lat]``, capped)."""
    points = await position_service.route_of(
        session, trip.vehicle_id, org_id, trip.start_time, trip.end_time
    )
    return TripDetail(**trip.model_dump(), route=LineString(coordinates=points))
