"""Materializing a replay's trips and stops: rows kept by key, the rest of the scope replaced,
and the webhook events of what changed, once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain.devices.models import Device
from milepost_common.domain.trips import service as trip_service
from milepost_common.domain.trips.models import Stop, Trip
from milepost_common.testing.factories import make_device

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def trip(start: datetime, end: datetime | None) -> trip_service.TripSpan:
    minutes = ((end or start + 5 * MINUTE) - start) / MINUTE
    return trip_service.TripSpan(
        start_time=start,
        end_time=end,
        start_lat=1.0,
        start_lon=2.0,
        end_lat=1.1,
        end_lon=2.1,
        distance_m=500.0 * minutes,
        duration_s=60.0 * minutes,
        avg_speed=30.0,
        max_speed=50.0,
    )


def stop(start: datetime, end: datetime | None) -> trip_service.StopSpan:
    return trip_service.StopSpan(
        start_time=start,
        end_time=end,
        lat=1.1,
        lon=2.1,
        duration_s=((end or start) - start).total_seconds(),
    )


def replay(
    device: Device,
    trips: list[trip_service.TripSpan],
    stops: list[trip_service.StopSpan] | None = None,
    since: datetime | None = None,
) -> list[trip_service.DeviceSegments]:
    tenure = trip_service.Tenure(device.id, device.org_id, None)
    return [trip_service.DeviceSegments(tenure, device.name, since, since, trips, stops or [])]


async def trips_of(session: AsyncSession, device: Device) -> list[Trip]:
    rows = await session.execute(
        select(Trip).where(col(Trip.device_id) == device.id).order_by(col(Trip.start_time))
    )
    return list(rows.scalars())


class TestMaterializeSegments:
    async def test_a_trip_starts_ends_and_keeps_its_id(self, session: AsyncSession) -> None:
        device = await make_device(session, name="Van 1")
        opened = await trip_service.materialize_segments(session, replay(device, [trip(T0, None)]))
        assert [e.type for e in opened] == ["trip.started"]
        first = (await trips_of(session, device))[0]

        closed = replay(device, [trip(T0, T0 + 10 * MINUTE)], [stop(T0 + 10 * MINUTE, None)])
        events = await trip_service.materialize_segments(session, closed)

        assert [e.type for e in events] == ["trip.ended", "stop.started"]
        assert [t.id for t in await trips_of(session, device)] == [first.id]
        assert events[0].data["vehicle_name"] == "Van 1"

    async def test_the_same_replay_again_changes_nothing(self, session: AsyncSession) -> None:
        device = await make_device(session)
        segments = replay(device, [trip(T0, T0 + 10 * MINUTE)], [stop(T0 + 10 * MINUTE, None)])
        first = await trip_service.materialize_segments(session, segments)
        assert [e.type for e in first] == ["trip.started", "trip.ended", "stop.started"]

        assert await trip_service.materialize_segments(session, segments) == []

    async def test_rows_in_the_scope_the_replay_no_longer_has_are_deleted(
        self, session: AsyncSession
    ) -> None:
        device = await make_device(session)
        early, late = trip(T0, T0 + 5 * MINUTE), trip(T0 + 30 * MINUTE, T0 + 40 * MINUTE)
        await trip_service.materialize_segments(session, replay(device, [early, late]))

        moved = trip(T0 + 31 * MINUTE, T0 + 40 * MINUTE)
        events = await trip_service.materialize_segments(
            session, replay(device, [moved], since=T0 + 20 * MINUTE)
        )

        starts = [t.start_time for t in await trips_of(session, device)]
        assert starts == [early.start_time, moved.start_time]  # before the scope: kept
        assert [e.type for e in events] == ["trip.started", "trip.ended"]
        stops = await session.execute(select(Stop).where(col(Stop.device_id) == device.id))
        assert list(stops.scalars()) == []
