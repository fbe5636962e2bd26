"""The summary report names time stopped for what it is (`stopped_time_s`; `idle_time_s` kept,
deprecated) and defaults to the last 7 whole days in the organization's time zone (issue 15,
item 12)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.devices.models import Device
from milepost_common.domain.trips.models import Trip
from milepost_common.testing.factories import make_alert, make_device, make_stop, make_trip
from services.api.tests.api_support import Bearer, Team, rule_for, trip

ZONE = ZoneInfo("America/Los_Angeles")


SUMMARY = "/api/v1/reports/summary"


async def trip_at(session: AsyncSession, device: Device, start: datetime, km: float) -> Trip:
    end = start + timedelta(minutes=10)
    return await make_trip(session, device, start, end, distance_m=km * 1000, duration_s=600)


def local_midnight(days_ago: int) -> datetime:
    today = datetime.now(ZONE).date()
    return datetime.combine(today - timedelta(days=days_ago), time.min, tzinfo=ZONE)


def utc_z(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def in_los_angeles(session: AsyncSession, team: Team) -> Device:
    team.org.timezone = "America/Los_Angeles"
    session.add(team.org)
    return await make_device(session, team.org)


JAN1 = datetime(2026, 1, 1, tzinfo=UTC)


class TestStoppedTime:
    async def test_stopped_time_is_the_stops_duration_and_idle_time_keeps_it(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org)
        start = datetime(2026, 1, 1, 9, tzinfo=UTC)
        for h in (0, 2):
            at = start + timedelta(hours=h)
            await make_stop(session, device, at, at + timedelta(minutes=30), duration_s=1800)

        response = await client.get(
            SUMMARY, params={"from": "2026-01-01", "to": "2026-01-02"}, headers=bearer(team.viewer)
        )

        (row,) = response.json()["items"]
        assert (row["stops"], row["stopped_time_s"], row["idle_time_s"]) == (2, 3600, 3600)

    def test_the_document_marks_idle_time_deprecated(self, api_app: FastAPI) -> None:
        row = api_app.openapi()["components"]["schemas"]["SummaryRow"]["properties"]
        assert row["idle_time_s"]["deprecated"] is True
        assert "stopped_time_s" in row["idle_time_s"]["description"]
        assert "deprecated" not in row["stopped_time_s"]
        assert "between trips" in row["stopped_time_s"]["description"]


class TestDefaultRange:
    async def test_without_from_and_to_the_last_seven_whole_days_of_the_organization(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        device = await in_los_angeles(session, team)
        await trip_at(session, device, local_midnight(8) + timedelta(hours=12), 1)  # too old
        await trip_at(session, device, local_midnight(7) + timedelta(minutes=1), 2)  # first day
        await trip_at(session, device, local_midnight(1) + timedelta(hours=23), 3)  # yesterday
        await trip_at(session, device, local_midnight(0) + timedelta(minutes=1), 4)  # today

        response = await client.get(SUMMARY, headers=bearer(team.viewer))

        body = response.json()
        assert response.status_code == 200
        assert (body["from"], body["to"]) == (
            utc_z(local_midnight(7)),
            utc_z(local_midnight(0)),
        )
        assert [row["distance_m"] for row in body["items"]] == [2000.0, 3000.0]

    async def test_one_bound_given_the_other_is_seven_days_away(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        await in_los_angeles(session, team)
        await session.flush()

        only_from = await client.get(
            SUMMARY, params={"from": "2026-03-08"}, headers=bearer(team.viewer)
        )
        only_to = await client.get(
            SUMMARY, params={"to": "2026-03-15"}, headers=bearer(team.viewer)
        )

        # Clocks go forward in Los Angeles on 2026-03-08: 7 days there are 167 hours.
        expected = ("2026-03-08T08:00:00Z", "2026-03-15T07:00:00Z")
        assert (only_from.json()["from"], only_from.json()["to"]) == expected
        assert (only_to.json()["from"], only_to.json()["to"]) == expected

    async def test_exports_take_the_same_default(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        device = await in_los_angeles(session, team)
        await trip_at(session, device, local_midnight(2) + timedelta(hours=8), 5)

        summary_csv = await client.get("/api/v1/reports/summary.csv", headers=bearer(team.viewer))
        trips_csv = await client.get("/api/v1/reports/trips.csv", headers=bearer(team.viewer))

        assert summary_csv.status_code == 200
        assert [r["distance_m"] for r in csv.DictReader(io.StringIO(summary_csv.text))] == [
            "5000.0"
        ]
        assert [r["distance_m"] for r in csv.DictReader(io.StringIO(trips_csv.text))] == ["5000.0"]

    def test_the_document_states_the_defaults(self, api_app: FastAPI) -> None:
        operation = api_app.openapi()["paths"][SUMMARY]["get"]
        parameters = {p["name"]: p for p in operation["parameters"]}
        assert parameters["from"]["required"] is False
        assert "last 7 whole days" in parameters["from"]["description"]
        assert parameters["to"]["required"] is False


class TestOutOfTheCalendar:
    """Bounds that the defaults or the organization's zone move out of UTC's calendar (years
    1 to 9999) are the request's fault: 422 naming what it gave, never a 500 (found by `make
    fuzz`, FUZZ_SEED=3619410745)."""

    @pytest.mark.parametrize(
        ("path", "query", "blamed"),
        [
            (SUMMARY, {"to": "0001-01-01"}, ["to"]),  # from = to - 7 days: before year 1
            (SUMMARY, {"to": "0001-01-08"}, ["to"]),  # from = 0001-01-01 in Berlin: year 0 UTC
            (SUMMARY, {"from": "9999-12-31"}, ["from"]),  # to = from + 7 days: after 9999
            (SUMMARY, {"from": "0001-01-01", "to": "0001-01-05"}, ["from", "to"]),
            ("/api/v1/reports/summary.csv", {"to": "0001-01-01"}, ["to"]),
            (
                "/api/v1/reports/summary.csv",
                {"from": "0001-01-01", "to": "0001-01-05"},
                ["from", "to"],
            ),
            ("/api/v1/reports/trips.csv", {"from": "9999-12-31"}, ["from"]),
        ],
    )
    async def test_a_422_naming_the_bounds_given(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        bearer: Bearer,
        path: str,
        query: dict[str, str],
        blamed: list[str],
    ) -> None:
        team.org.timezone = "Europe/Berlin"  # ahead of UTC: its 0001-01-01 began in year 0
        session.add(team.org)
        await session.flush()

        response = await client.get(path, params=query, headers=bearer(team.viewer))

        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == "validation_failed"
        assert "between the years 1 and 9999" in error["message"]
        assert [d["loc"] for d in error["details"]] == [["query", name] for name in blamed]

    async def test_the_last_days_of_the_calendar_still_answer(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        response = await client.get(
            SUMMARY, params={"from": "9999-12-20"}, headers=bearer(team.viewer)
        )

        assert response.status_code == 200
        assert (response.json()["from"], response.json()["to"]) == (
            "9999-12-20T00:00:00Z",
            "9999-12-27T00:00:00Z",
        )

    @pytest.mark.parametrize(
        ("path", "zone", "query"),
        [
            (SUMMARY, "Europe/Berlin", {"to": "9999-12-31T12:00:00Z"}),
            ("/api/v1/reports/summary.csv", "Europe/Berlin", {"to": "9999-12-31T12:00:00Z"}),
            (SUMMARY, "America/New_York", {"to": "9999-12-31T12:00:00-05:00"}),
        ],
    )
    async def test_a_range_ending_on_the_calendars_last_day_answers(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        bearer: Bearer,
        path: str,
        zone: str,
        query: dict[str, str],
    ) -> None:
        # Cutting the days stepped past 9999-12-31 looking for the next midnight: a 500.
        team.org.timezone = zone
        session.add(team.org)
        await session.flush()

        response = await client.get(path, params=query, headers=bearer(team.viewer))

        assert response.status_code == 200, response.text

    @pytest.mark.parametrize(
        ("path", "zone", "query", "blamed"),
        [
            # Year 1 in UTC, but still year 0 on New York's clocks: no date to name the day.
            (SUMMARY, "America/New_York", {"from": "0001-01-01T00:00:00Z"}, ["from"]),
            # 9999-12-31 in UTC, already year 10000 in Tokyo.
            (
                "/api/v1/reports/summary.csv",
                "Asia/Tokyo",
                {"from": "9999-12-30T00:00:00Z", "to": "9999-12-31T20:00:00Z"},
                ["from", "to"],
            ),
        ],
    )
    async def test_bounds_beyond_the_calendar_on_the_organizations_clock_are_a_422(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        bearer: Bearer,
        path: str,
        zone: str,
        query: dict[str, str],
        blamed: list[str],
    ) -> None:
        team.org.timezone = zone
        session.add(team.org)
        await session.flush()

        response = await client.get(path, params=query, headers=bearer(team.viewer))

        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert "between the years 1 and 9999" in error["message"]
        assert [d["loc"] for d in error["details"]] == [["query", name] for name in blamed]


class TestReports:
    async def test_summary_cuts_days_in_the_organizations_time_zone(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        team.org.timezone = "Europe/Berlin"
        session.add(team.org)
        device = await make_device(session, team.org)
        rule = await rule_for(session, team)
        late = datetime(2026, 1, 1, 23, 30, tzinfo=UTC)  # 00:30 on Jan 2 in Berlin
        nine, ten = datetime(2026, 1, 1, 9, tzinfo=UTC), datetime(2026, 1, 1, 10, tzinfo=UTC)
        await trip(session, device, datetime(2026, 1, 1, 8, tzinfo=UTC), 60, 50, 100)
        await trip(session, device, late, 20, 10, 70)
        await make_stop(session, device, nine, ten, lat=1, lon=2, duration_s=3600)
        await make_alert(session, device, late, rule)

        response = await client.get(
            "/api/v1/reports/summary",
            params={"from": "2026-01-01", "to": "2026-01-03"},
            headers=bearer(team.viewer),
        )

        body = response.json()
        assert response.status_code == 200
        assert body["timezone"] == "Europe/Berlin"
        assert body["from"] == "2025-12-31T23:00:00Z"
        assert [
            (
                r["date"],
                r["distance_m"],
                r["driving_time_s"],
                r["stops"],
                r["idle_time_s"],
                r["max_speed"],
                r["alerts"],
            )
            for r in body["items"]
        ] == [
            ("2026-01-01", 50000.0, 3600.0, 1, 3600.0, 100.0, 0),
            ("2026-01-02", 10000.0, 1200.0, 0, 0.0, 70.0, 1),
        ]

    @pytest.mark.parametrize(
        ("zone", "summer_offset_h"), [("CET", 2), ("MET", 2), ("EET", 3), ("WET", 1)]
    )
    async def test_a_zone_named_like_an_abbreviation_keeps_its_summer_time(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        bearer: Bearer,
        zone: str,
        summer_offset_h: int,
    ) -> None:
        # Postgres's `AT TIME ZONE 'CET'` is the abbreviation's fixed +01:00: in summer every
        # trip, stop and alert of local 00:00-01:00 counted on the day before, outside the range.
        team.org.timezone = zone
        session.add(team.org)
        device = await make_device(session, team.org)
        rule = await rule_for(session, team)
        half_past_midnight = datetime(2026, 7, 2, 0, 30, tzinfo=UTC) - timedelta(
            hours=summer_offset_h
        )
        ten_to_one = half_past_midnight + timedelta(minutes=20)
        await trip(session, device, half_past_midnight, 20, 5, 40)
        await make_stop(session, device, ten_to_one, ten_to_one + timedelta(hours=1))
        await make_alert(session, device, ten_to_one, rule)

        response = await client.get(
            SUMMARY, params={"from": "2026-07-02", "to": "2026-07-03"}, headers=bearer(team.viewer)
        )

        assert response.status_code == 200
        items = response.json()["items"]
        assert [(r["date"], r["distance_m"], r["stops"], r["alerts"]) for r in items] == [
            ("2026-07-02", 5000.0, 1, 1)
        ]

    async def test_a_range_from_mid_day_counts_that_day_from_there(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        team.org.timezone = "Europe/Berlin"  # 2026-03-29 has 23 hours there
        session.add(team.org)
        device = await make_device(session, team.org)
        for hour in (11, 22, 23):  # 12:00 and 23:00 on the 28th, 00:00 on the 29th (CET)
            await trip(session, device, datetime(2026, 3, 28, hour, tzinfo=UTC), 1, 5, 30)

        response = await client.get(
            SUMMARY,
            params={"from": "2026-03-28T12:00:00+01:00", "to": "2026-03-30"},
            headers=bearer(team.viewer),
        )

        assert response.status_code == 200
        assert [(r["date"], r["distance_m"]) for r in response.json()["items"]] == [
            ("2026-03-28", 10000.0),
            ("2026-03-29", 5000.0),
        ]

    @pytest.mark.parametrize(
        ("path", "bound", "status"),
        [
            (SUMMARY, "20260329", 422),  # read as Unix seconds: 1970-08-23, and nothing in it
            (SUMMARY, "2026-03-29T00:00:00", 422),  # a naive midnight passed as a date
            (SUMMARY, "2026-03-29T10:00:00", 422),
            (SUMMARY, "2026-03-29", 200),
            (SUMMARY, "2026-03-29T00:00:00+02:00", 200),
            ("/api/v1/trips", "20260329", 422),
            ("/api/v1/alerts", "1774742400", 422),
            ("/api/v1/trips", "2026-03-29T00:00:00Z", 200),
        ],
    )
    async def test_a_bound_is_iso_8601_never_a_number_nor_naive(
        self,
        client: httpx.AsyncClient,
        team: Team,
        bearer: Bearer,
        path: str,
        bound: str,
        status: int,
    ) -> None:
        response = await client.get(path, params={"from": bound}, headers=bearer(team.viewer))

        assert response.status_code == status, response.text
        if status == 422:
            assert response.json()["error"]["code"] == "validation_failed"

    async def test_range_is_validated(
        self, client: httpx.AsyncClient, team: Team, bearer: Bearer
    ) -> None:
        for params in (
            {"from": "2026-01-02", "to": "2026-01-01"},
            {"from": "2024-01-01", "to": "2026-01-01"},
            {"from": "yesterday", "to": "2026-01-01"},
        ):
            response = await client.get(
                "/api/v1/reports/summary", params=params, headers=bearer(team.viewer)
            )
            assert response.status_code == 422, params

    async def test_trips_csv_is_streamed(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org)
        for h in range(3):
            await trip(session, device, JAN1 + timedelta(hours=h), 10, 1, 30)
        async with client.stream(
            "GET",
            "/api/v1/reports/trips.csv",
            params={"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"},
            headers=bearer(team.viewer),
        ) as response:
            text = (await response.aread()).decode()
        rows = list(csv.reader(io.StringIO(text)))
        assert response.headers["content-type"].startswith("text/csv")
        assert "ETag" not in response.headers
        assert rows[0][:5] == ["id", "vehicle_id", "vehicle_name", "vehicle_plate", "start_time"]
        assert [r[4] for r in rows[1:]] == [
            "2026-01-01T00:00:00Z",
            "2026-01-01T01:00:00Z",
            "2026-01-01T02:00:00Z",
        ]

    async def test_summary_csv(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org, plate="B-MP 1")
        await trip(session, device, JAN1, 10, 1, 30)
        response = await client.get(
            "/api/v1/reports/summary.csv",
            params={"from": "2026-01-01", "to": "2026-01-02"},
            headers=bearer(team.viewer),
        )
        rows = list(csv.reader(io.StringIO(response.text)))
        assert rows == [
            [
                "vehicle_id",
                "vehicle_name",
                "vehicle_plate",
                "date",
                "distance_m",
                "driving_time_s",
                "stopped_time_s",
                "idle_time_s",
                "stops",
                "max_speed",
                "alerts",
            ],
            [
                str(device.id),
                device.name,
                "B-MP 1",
                "2026-01-01",
                "1000.0",
                "600",
                "0",
                "0",
                "0",
                "30.0",
                "0",
            ],
        ]
