from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from milepost_common.domain.alert_rules.models import AlertRule
from milepost_common.domain.alerts.models import Alert, AlertType
from milepost_common.domain.audit.models import AuditEntry
from milepost_common.domain.devices.models import Device
from milepost_common.domain.trips.models import Stop, Trip
from milepost_common.testing.factories import make_device, make_position
from services.api.tests.api_support import Bearer, Team

JAN1 = datetime(2026, 1, 1, tzinfo=UTC)


def trip(device: Device, start: datetime, minutes: int, km: float, vmax: float) -> Trip:
    return Trip(
        org_id=device.org_id,
        device_id=device.id,
        start_time=start,
        end_time=start + timedelta(minutes=minutes),
        start_lat=52.5,
        start_lon=13.4,
        end_lat=52.6,
        end_lon=13.5,
        distance_m=km * 1000,
        duration_s=minutes * 60,
        avg_speed=km / (minutes / 60),
        max_speed=vmax,
    )


async def rule_for(session: AsyncSession, team: Team) -> AlertRule:
    rule = AlertRule(
        org_id=team.org.id, name="Speed", type=AlertType.OVERSPEED, params={"multiplier": 1.0}
    )
    session.add(rule)
    await session.flush()
    return rule


class TestTrips:
    async def test_list_filters_and_detail_with_route(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        one = await make_device(session, team.org)
        two = await make_device(session, team.org)
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
        first = trip(one, start, 30, 20, 80)
        session.add_all([first, trip(one, start + timedelta(hours=1), 10, 5, 50)])
        session.add(trip(two, start, 15, 12, 90))
        await session.flush()
        for minute in (0, 10, 20, 30, 40):
            await make_position(
                session, one, start + timedelta(minutes=minute), lon=13.4 + minute / 100
            )
        headers = bearer(team.viewer)

        all_trips = await client.get("/api/v1/trips", headers=headers)
        of_one = await client.get(
            "/api/v1/trips",
            params={"vehicle_id": str(one.id), "to": (start + timedelta(minutes=30)).isoformat()},
            headers=headers,
        )
        longest = await client.get("/api/v1/trips", params={"sort": "-distance_m"}, headers=headers)
        detail = await client.get(f"/api/v1/trips/{first.id}", headers=headers)

        assert len(all_trips.json()["items"]) == 3
        assert [t["id"] for t in of_one.json()["items"]] == [str(first.id)]
        assert [t["distance_m"] for t in longest.json()["items"]] == [20000.0, 12000.0, 5000.0]
        assert detail.json()["vehicle_id"] == str(one.id)
        assert detail.json()["route"]["type"] == "LineString"
        assert len(detail.json()["route"]["coordinates"]) == 4  # fixes within [start, end]

    async def test_stops(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org)
        session.add(
            Stop(
                org_id=team.org.id,
                device_id=device.id,
                start_time=JAN1,
                end_time=JAN1 + timedelta(hours=1),
                lat=1,
                lon=2,
                duration_s=3600,
            )
        )
        await session.flush()
        response = await client.get(
            "/api/v1/stops", params={"vehicle_id": str(device.id)}, headers=bearer(team.viewer)
        )
        assert response.json()["items"][0]["duration_s"] == 3600


class TestAlerts:
    async def test_filters_are_half_open_and_acknowledge_records_who(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org)
        rule = await rule_for(session, team)
        alerts = [
            Alert(
                org_id=team.org.id,
                device_id=device.id,
                rule_id=rule.id,
                type=AlertType.OVERSPEED,
                occurred_at=JAN1 + timedelta(minutes=m),
            )
            for m in (0, 10, 20)
        ]
        session.add_all(alerts)
        await session.flush()
        window = {
            "from": (JAN1 + timedelta(minutes=10)).isoformat(),
            "to": (JAN1 + timedelta(minutes=20)).isoformat(),
        }
        listed = await client.get("/api/v1/alerts", params=window, headers=bearer(team.viewer))
        ack = await client.post(
            f"/api/v1/alerts/{alerts[0].id}/acknowledge", headers=bearer(team.manager)
        )
        ack_again = await client.post(
            f"/api/v1/alerts/{alerts[0].id}/acknowledge", headers=bearer(team.owner)
        )
        open_only = await client.get(
            "/api/v1/alerts", params={"acknowledged": "false"}, headers=bearer(team.viewer)
        )

        assert [a["id"] for a in listed.json()["items"]] == [str(alerts[1].id)]
        assert ack.json()["acknowledged_by"] == str(team.manager.id)
        assert ack.json()["acknowledged_at"] is not None
        assert ack_again.json()["acknowledged_by"] == str(team.manager.id)
        assert [a["id"] for a in open_only.json()["items"]] == [str(a.id) for a in alerts[1:]]
        entries = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == "alerts.acknowledge")
            )
        ).all()
        assert len(entries) == 1


class TestReports:
    async def test_summary_cuts_days_in_the_organizations_time_zone(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        team.org.timezone = "Europe/Berlin"
        session.add(team.org)
        device = await make_device(session, team.org)
        rule = await rule_for(session, team)
        late = datetime(2026, 1, 1, 23, 30, tzinfo=UTC)  # 00:30 on Jan 2 in Berlin
        session.add_all(
            [
                trip(device, datetime(2026, 1, 1, 8, tzinfo=UTC), 60, 50, 100),
                trip(device, late, 20, 10, 70),
                Stop(
                    org_id=team.org.id,
                    device_id=device.id,
                    start_time=datetime(2026, 1, 1, 9, tzinfo=UTC),
                    end_time=datetime(2026, 1, 1, 10, tzinfo=UTC),
                    lat=1,
                    lon=2,
                    duration_s=3600,
                ),
                Alert(
                    org_id=team.org.id,
                    device_id=device.id,
                    rule_id=rule.id,
                    type=AlertType.OVERSPEED,
                    occurred_at=late,
                ),
            ]
        )
        await session.flush()

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
        session.add_all([trip(device, JAN1 + timedelta(hours=h), 10, 1, 30) for h in range(3)])
        await session.flush()
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
        session.add(trip(device, JAN1, 10, 1, 30))
        await session.flush()
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
