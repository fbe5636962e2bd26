"""Numbers are rounded at the edge, JSON and CSV alike: metres and km/h to 0.1, durations to
whole seconds (issue 15, item 11). Stored values keep their precision."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import httpx
import orjson
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.alerts.models import AlertType
from milepost_common.domain.devices.models import Device
from milepost_common.domain.geofences.models import Geofence
from milepost_common.domain.trips.models import Trip
from milepost_common.testing.factories import (
    make_alert,
    make_alert_rule,
    make_device,
    make_device_state,
    make_position,
    make_stop,
    make_trip,
)
from services.api.tests.api_support import Bearer, Team

JAN1 = datetime(2026, 1, 1, 8, tzinfo=UTC)
DISTANCE = 8784.736612982577  # as the worker sums it
OSMAND_SPEED = 1.00008  # 0.54 knots as ingest converts it


async def noisy_trip(session: AsyncSession, device: Device) -> Trip:
    """A trip of Jan 1 with the unrounded numbers the worker stores."""
    start = {"start_lat": 52.500001234, "start_lon": 13.400004321}
    numbers = {"distance_m": DISTANCE, "duration_s": 600.4, "avg_speed": 52.708412345}
    end = JAN1 + timedelta(seconds=600.4)
    return await make_trip(session, device, JAN1, end, max_speed=96.04999, **start, **numbers)


class TestTrips:
    async def test_trip_numbers_are_rounded_in_lists_and_detail(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org)
        trip = await noisy_trip(session, device)

        listed = await client.get("/api/v1/trips", headers=bearer(team.viewer))
        detail = await client.get(f"/api/v1/trips/{trip.id}", headers=bearer(team.viewer))

        for item in (listed.json()["items"][0], detail.json()):
            assert item["distance_m"] == 8784.7
            assert item["duration_s"] == 600
            assert isinstance(item["duration_s"], int)
            assert item["avg_speed"] == 52.7
            assert item["max_speed"] == 96.0
            assert item["start_lat"] == 52.500001234  # coordinates keep their precision
        assert b'"duration_s":600,' in listed.content

    async def test_stop_durations_are_whole_seconds(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org)
        end = JAN1 + timedelta(seconds=3599.6)
        await make_stop(session, device, JAN1, end, duration_s=3599.6)

        response = await client.get("/api/v1/stops", headers=bearer(team.viewer))

        (stop,) = response.json()["items"]
        assert stop["duration_s"] == 3600
        assert isinstance(stop["duration_s"], int)


class TestPositions:
    async def test_an_osmand_speed_is_shown_to_a_tenth_in_history_and_latest(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org)
        fix_time = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        await make_position(
            session, device, fix_time, speed=OSMAND_SPEED, altitude=34.5612, accuracy=4.449
        )
        where = {"last_fix_time": fix_time, "last_lat": 52.52, "last_lon": 13.405}
        measured = {"last_altitude": 34.5612, "last_accuracy": 4.449}
        await make_device_state(session, device, last_speed=OSMAND_SPEED, **where, **measured)
        geojson = {"Accept": "application/geo+json", **bearer(team.viewer)}

        history = await client.get(
            f"/api/v1/vehicles/{device.id}/positions", headers=bearer(team.viewer)
        )
        history_geo = await client.get(f"/api/v1/vehicles/{device.id}/positions", headers=geojson)
        latest = await client.get("/api/v1/positions/latest", headers=bearer(team.viewer))
        latest_geo = await client.get("/api/v1/positions/latest", headers=geojson)

        shown = [
            history.json()["items"][0],
            history_geo.json()["features"][0]["properties"],
            latest.json()["items"][0],
            latest_geo.json()["features"][0]["properties"],
        ]
        assert [(p["speed"], p["altitude"], p["accuracy"]) for p in shown] == [(1.0, 34.6, 4.4)] * 4
        assert b'"speed":1.0,' in history.content


class TestAlerts:
    async def test_speeds_and_durations_in_details_are_rounded(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org)
        speed = {"limit_kmh": 90}
        rule = await make_alert_rule(session, team.org.id, name="Speed", params=speed)
        idle = {"name": "Idle", "params": {"min_duration_s": 60}}
        idling = await make_alert_rule(session, team.org.id, AlertType.IDLE, **idle)
        fast = {"limit_kmh": 90, "max_speed": 112.34567, "end_time": None}
        await make_alert(session, device, JAN1, rule, details=fast)
        stood = {"min_duration_s": 60, "end_time": None, "duration_s": 61.700001}
        await make_alert(session, device, JAN1 + timedelta(hours=1), idling, details=stood)

        response = await client.get("/api/v1/alerts", headers=bearer(team.viewer))

        overspeed, idling = (a["details"] for a in response.json()["items"])
        assert overspeed == {"limit_kmh": 90.0, "max_speed": 112.3, "end_time": None}
        assert idling == {"min_duration_s": 60, "end_time": None, "duration_s": 62}


class TestSettings:
    async def test_limits_and_radii_are_shown_as_every_other_number(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        # Entered with more digits than shown; the rule's alerts showed 77.8 as its limit
        # while the rule itself showed 77.77777.
        device = await make_device(session, team.org, speed_limit_kmh=88.88888)
        rule = await make_alert_rule(
            session, team.org.id, AlertType.OVERSPEED, params={"limit_kmh": 77.77777}
        )
        fence = Geofence(
            org_id=team.org.id,
            name="Depot",
            geometry={"type": "Point", "coordinates": [13.4, 52.5]},
            radius_m=123.456789,
        )
        session.add(fence)
        await session.flush()
        headers = bearer(team.viewer)

        vehicle = await client.get(f"/api/v1/vehicles/{device.id}", headers=headers)
        shown_rule = await client.get(f"/api/v1/alert-rules/{rule.id}", headers=headers)
        shown_fence = await client.get(f"/api/v1/geofences/{fence.id}", headers=headers)

        assert vehicle.json()["speed_limit_kmh"] == 88.9
        assert shown_rule.json()["params"]["limit_kmh"] == 77.8
        assert shown_fence.json()["radius_m"] == 123.5


class TestReports:
    async def test_summary_json_and_csv_show_the_same_rounded_numbers(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org)
        await noisy_trip(session, device)
        hour = timedelta(hours=1)
        await make_stop(session, device, JAN1 + hour, JAN1 + 2 * hour, duration_s=3599.6)
        window = {"from": "2026-01-01", "to": "2026-01-02"}

        report = await client.get(
            "/api/v1/reports/summary", params=window, headers=bearer(team.viewer)
        )
        exported = await client.get(
            "/api/v1/reports/summary.csv", params=window, headers=bearer(team.viewer)
        )

        (row,) = report.json()["items"]
        assert (row["distance_m"], row["driving_time_s"], row["max_speed"]) == (8784.7, 600, 96.0)
        assert (row["stopped_time_s"], row["idle_time_s"]) == (3600, 3600)
        (line,) = csv.DictReader(io.StringIO(exported.text))
        assert (line["distance_m"], line["driving_time_s"], line["max_speed"]) == (
            "8784.7",
            "600",
            "96.0",
        )
        assert (line["stopped_time_s"], line["idle_time_s"]) == ("3600", "3600")

    async def test_trips_csv_shows_the_numbers_of_the_json(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org)
        await noisy_trip(session, device)

        exported = await client.get(
            "/api/v1/reports/trips.csv",
            params={"from": "2026-01-01", "to": "2026-01-02"},
            headers=bearer(team.viewer),
        )

        (line,) = csv.DictReader(io.StringIO(exported.text))
        assert (
            line["distance_m"],
            line["duration_s"],
            line["avg_speed"],
            line["max_speed"],
            line["start_lat"],
        ) == ("8784.7", "600", "52.7", "96.0", "52.500001234")


class TestDocument:
    def test_the_openapi_document_says_how_numbers_are_rounded(self, api_app: FastAPI) -> None:
        schemas = api_app.openapi()["components"]["schemas"]
        trip = schemas["TripRead"]["properties"]
        assert "rounded to 0.1" in trip["distance_m"]["description"]
        assert "rounded to 0.1" in trip["max_speed"]["description"]
        assert trip["duration_s"]["type"] == "integer"
        assert "whole seconds" in trip["duration_s"]["description"]
        position = orjson.dumps(schemas["PositionRead"]["properties"]["speed"]).decode()
        assert "rounded to 0.1" in position
        assert (
            "whole seconds" in schemas["SummaryRow"]["properties"]["driving_time_s"]["description"]
        )
