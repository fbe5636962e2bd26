"""The summary's days on the days a zone's clocks move (23, 25 and 23.5-hour days, a midnight
that does not exist, a date the zone skipped), checked against zoneinfo directly: each trip,
stop and alert counts on the date its start has on the organization's wall clock."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.trips.models import Stop, Trip
from milepost_common.testing.factories import make_device
from services.api.tests.api_support import Bearer, Team

SUMMARY = "/api/v1/reports/summary"
STEP = timedelta(minutes=15)


def midnight_utc(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of ``day`` on ``zone``'s wall clock, found by walking the UTC minutes
    (no reliance on how a library resolves a midnight the clocks skip)."""
    probe = datetime.combine(day, time.min, tzinfo=UTC) - timedelta(hours=15)
    while probe.astimezone(zone).date() < day:
        probe += timedelta(minutes=15)
    return probe


def z(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("zone_name", "first", "last"),
    [
        ("Europe/Berlin", date(2026, 3, 28), date(2026, 3, 30)),  # 23 hours on the 29th
        ("Europe/Berlin", date(2026, 10, 24), date(2026, 10, 26)),  # 25 hours on the 25th
        ("America/New_York", date(2026, 3, 7), date(2026, 3, 9)),
        ("America/New_York", date(2026, 10, 31), date(2026, 11, 2)),
        ("Australia/Lord_Howe", date(2026, 4, 4), date(2026, 4, 6)),  # 24.5 hours: back 30 min
        ("Australia/Lord_Howe", date(2026, 10, 3), date(2026, 10, 5)),  # 23.5 hours
        ("America/Santiago", date(2026, 9, 5), date(2026, 9, 7)),  # no 00:00 on the 6th
        ("America/Santiago", date(2026, 4, 4), date(2026, 4, 6)),  # 23:00-24:00 twice
        ("Pacific/Apia", date(2011, 12, 28), date(2012, 1, 1)),  # the 30th never happened
    ],
)
async def test_each_day_holds_what_began_on_its_wall_clock(
    client: httpx.AsyncClient,
    session: AsyncSession,
    team: Team,
    bearer: Bearer,
    zone_name: str,
    first: date,
    last: date,
) -> None:
    zone = ZoneInfo(zone_name)
    team.org.timezone = zone_name
    session.add(team.org)
    device = await make_device(session, team.org)
    start, end = midnight_utc(first, zone), midnight_utc(last + timedelta(days=1), zone)
    trips, stops = Counter[str](), Counter[str]()
    moment, n = start - 4 * STEP, 0
    while moment < end + 4 * STEP:
        day = moment.astimezone(zone).date().isoformat()
        if start <= moment < end:
            trips[day] += n
            stops[day] += 1
        session.add(
            Trip(
                org_id=team.org.id,
                device_id=device.id,
                start_time=moment,
                end_time=moment + STEP,
                start_lat=1,
                start_lon=2,
                end_lat=1,
                end_lon=2,
                distance_m=n,
            )
        )
        session.add(
            Stop(
                org_id=team.org.id,
                device_id=device.id,
                start_time=moment + timedelta(minutes=1),
                end_time=moment + STEP,
                lat=1,
                lon=2,
            )
        )
        moment, n = moment + STEP, n + 1
    await session.flush()

    response = await client.get(
        SUMMARY,
        params={"from": first.isoformat(), "to": (last + timedelta(days=1)).isoformat()},
        headers=bearer(team.viewer),
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from"], body["to"]) == (z(start), z(end))
    assert {r["date"]: r["distance_m"] for r in body["items"]} == dict(trips)
    assert {r["date"]: r["stops"] for r in body["items"]} == dict(stops)
