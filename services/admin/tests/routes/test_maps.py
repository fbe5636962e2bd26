"""What the console's map reads: the JSON routes (latest positions, a device's trips and stops
of a day in its organization's time zone, recent alerts). The page itself, the console's CSP
and the vendored Leaflet: console/pages/test_maps.py."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from admin_support import Staff, bearer, console_login
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_admin.settings import AdminSettings
from milepost_common.auth import Realm
from milepost_common.domain.alerts.models import AlertType
from milepost_common.domain.devices.models import Device
from milepost_common.testing.factories import (
    make_alert,
    make_alert_rule,
    make_device,
    make_device_state,
    make_organization,
    make_position,
    make_stop,
    make_trip,
    make_user,
)

LA = ZoneInfo("America/Los_Angeles")


async def fix(
    session: AsyncSession, device: Device, at: datetime, lat: float, lon: float, **fields: Any
) -> None:
    """The device's latest fix, as the worker records it."""
    await make_device_state(session, device, last_fix_time=at, last_lat=lat, last_lon=lon, **fields)


async def segments_of_day(
    client: httpx.AsyncClient,
    segments: str,
    device_id: uuid.UUID,
    day: date | str,
    headers: dict[str, str],
) -> httpx.Response:
    """A device's ``segments`` ("trips" or "stops") of ``day`` from the map's JSON route."""
    url = f"/admin/v1/devices/{device_id}/{segments}"
    return await client.get(url, params={"date": str(day)}, headers=headers)


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=LA)


def a_recent_day() -> date:
    """Two days ago in Los Angeles: its fixes have partitions."""
    return datetime.now(LA).date() - timedelta(days=2)


class TestListFleetPositions:
    async def test_one_item_per_vehicle_with_a_fix(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        now = datetime.now(UTC)
        moving = await make_device(session, org, name="Van 1", plate="B-MP 1")
        parked = await make_device(session, org, name="Van 2")
        await make_device(session, org, name="Never reported")
        await fix(
            session,
            moving,
            now - timedelta(minutes=1),
            52.52,
            13.40,
            last_speed=47.5,
            last_course=90.0,
        )
        await fix(session, parked, now - timedelta(hours=3), 52.40, 13.10)
        await fix(session, await make_device(session), now, 48.1, 11.5)  # another organization's

        response = await client.get(
            f"/admin/v1/organizations/{org.id}/positions/latest", headers=staff.support_auth
        )

        assert response.status_code == 200
        body = response.json()
        assert body["next_cursor"] is None
        assert [i["name"] for i in body["items"]] == ["Van 2", "Van 1"]  # by fix time
        van = body["items"][1]
        assert van == {
            "vehicle_id": str(moving.id),
            "unique_id": moving.unique_id,
            "name": "Van 1",
            "plate": "B-MP 1",
            "disabled": False,
            "status": "online",
            "fix_time": van["fix_time"],
            "lat": 52.52,
            "lon": 13.40,
            "speed": 47.5,
            "course": 90.0,
        }
        assert body["items"][0]["status"] == "offline"
        assert body["items"][0]["speed"] is None

    async def test_unknown_organization_is_404(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        response = await client.get(
            f"/admin/v1/organizations/{uuid.uuid4()}/positions/latest", headers=staff.support_auth
        )

        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"

    async def test_no_credentials_is_401_before_404(self, client: httpx.AsyncClient) -> None:
        response = await client.get(f"/admin/v1/organizations/{uuid.uuid4()}/positions/latest")

        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"

    async def test_public_api_token_is_401(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        admin_settings: AdminSettings,
    ) -> None:
        owner = await make_user(session)

        response = await client.get(
            f"/admin/v1/organizations/{owner.org_id}/positions/latest",
            headers=bearer(admin_settings, owner, Realm.API),
        )

        assert response.status_code == 401

    async def test_the_console_session_reads_without_a_token(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        await fix(session, await make_device(session, org), datetime.now(UTC), 52.5, 13.4)
        await console_login(client, staff.support)

        response = await client.get(f"/admin/v1/organizations/{org.id}/positions/latest")

        assert response.status_code == 200
        assert len(response.json()["items"]) == 1


class TestListDeviceDayTrips:
    async def test_the_day_is_the_organizations(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session, timezone="America/Los_Angeles")
        device = await make_device(session, org)
        day = a_recent_day()
        before = day - timedelta(days=1)
        after = day + timedelta(days=1)
        # The day before, across its start, within it, across its end, the day after.
        await make_trip(session, device, local(before, 23, 0), local(before, 23, 50))
        across_start = await make_trip(session, device, local(before, 23, 40), local(day, 0, 5))
        first = await make_trip(session, device, local(day, 0, 10), local(day, 0, 40))
        across_end = await make_trip(session, device, local(day, 23, 50), local(after, 0, 20))
        await make_trip(session, device, local(after, 0, 10), local(after, 0, 30))
        await make_trip(session, await make_device(session, org), local(day, 9), local(day, 10))
        for minute, lon in ((10, 13.40), (20, 13.45), (40, 13.50)):
            await make_position(session, device, local(day, 0, minute), lat=52.5, lon=lon)

        response = await segments_of_day(client, "trips", device.id, day, staff.support_auth)

        assert response.status_code == 200
        body = response.json()
        assert [t["id"] for t in body["items"]] == [
            str(across_start.id),
            str(first.id),
            str(across_end.id),
        ]
        assert body["vehicle_id"] == str(device.id)
        assert body["day"] == day.isoformat()
        assert body["timezone"] == "America/Los_Angeles"
        start = datetime.fromisoformat(body["start"])
        assert start == local(day, 0)
        assert datetime.fromisoformat(body["end"]) == local(after, 0)
        assert body["items"][1]["route"] == {
            "type": "LineString",
            "coordinates": [[13.40, 52.5], [13.45, 52.5], [13.50, 52.5]],
        }

    async def test_an_open_trip_is_on_every_day_it_spans(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session, timezone="America/Los_Angeles")
        device = await make_device(session, org)
        day = a_recent_day()
        moving = await make_trip(session, device, local(day - timedelta(days=1), 22), None)

        response = await segments_of_day(client, "trips", device.id, day, staff.support_auth)

        assert [t["id"] for t in response.json()["items"]] == [str(moving.id)]

    async def test_only_the_current_organizations_trips(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        previous = await make_organization(session)
        org = await make_organization(session, timezone="America/Los_Angeles")
        device = await make_device(session, org)
        day = a_recent_day()
        await make_trip(session, device, local(day, 8), local(day, 9), org_id=previous.id)

        response = await segments_of_day(client, "trips", device.id, day, staff.support_auth)

        assert response.json()["items"] == []

    async def test_unknown_device_is_404(self, client: httpx.AsyncClient, staff: Staff) -> None:
        response = await segments_of_day(
            client, "trips", uuid.uuid4(), "2026-03-01", staff.support_auth
        )

        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"

    @pytest.mark.parametrize("value", ["2026-13-01", "yesterday", "0001-01-01", "9999-12-31"])
    async def test_a_bad_date_is_422(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff, value: str
    ) -> None:
        device = await make_device(session)

        response = await segments_of_day(client, "trips", device.id, value, staff.support_auth)

        assert response.status_code == 422
        assert response.json()["error"]["code"] == "validation_failed"

    async def test_the_date_is_required(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        device = await make_device(session)

        response = await client.get(
            f"/admin/v1/devices/{device.id}/trips", headers=staff.support_auth
        )

        assert response.status_code == 422


class TestListDeviceDayStops:
    async def test_the_night_before_and_the_open_stop_count(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session, timezone="America/Los_Angeles")
        device = await make_device(session, org)
        day = a_recent_day()
        before = day - timedelta(days=1)
        await make_stop(session, device, local(before, 9), local(before, 18))  # over before the day
        night = await make_stop(session, device, local(before, 19), local(day, 7))
        lunch = await make_stop(session, device, local(day, 12), local(day, 13))
        parked = await make_stop(session, device, local(day, 18), None)

        response = await segments_of_day(client, "stops", device.id, day, staff.support_auth)

        assert response.status_code == 200
        items = response.json()["items"]
        assert [s["id"] for s in items] == [str(night.id), str(lunch.id), str(parked.id)]
        assert set(items[0]) == {
            "id",
            "vehicle_id",
            "vehicle_name",
            "start_time",
            "end_time",
            "lat",
            "lon",
            "duration_s",
        }

    async def test_unknown_device_is_404(self, client: httpx.AsyncClient, staff: Staff) -> None:
        response = await segments_of_day(
            client, "stops", uuid.uuid4(), "2026-03-01", staff.support_auth
        )

        assert response.status_code == 404


class TestListRecentAlerts:
    async def test_the_last_hours_of_the_organization_ascending(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        other = await make_organization(session)
        now = datetime.now(UTC)
        rule = await make_alert_rule(session, org.id, AlertType.OVERSPEED, name="Fast")
        other_rule = await make_alert_rule(session, other.id, AlertType.OVERSPEED, name="Fast")
        device = await make_device(session, org)
        ages = {"old": timedelta(hours=30), "earlier": timedelta(hours=5), "latest": timedelta(0)}
        where = {"lat": 52.5, "lon": 13.4, "details": {"speed": 120.0}}
        alerts = {
            name: await make_alert(session, device, now - age, rule, **where)
            for name, age in ages.items()
        }
        foreign_device = await make_device(session, other)
        await make_alert(session, foreign_device, now, other_rule)
        url = f"/admin/v1/organizations/{org.id}/alerts/recent"

        day = await client.get(url, headers=staff.support_auth)
        hour = await client.get(url, params={"hours": 1}, headers=staff.support_auth)

        assert day.status_code == 200
        assert [a["id"] for a in day.json()["items"]] == [
            str(alerts["earlier"].id),
            str(alerts["latest"].id),
        ]
        assert day.json()["items"][1]["lat"] == 52.5
        assert [a["id"] for a in hour.json()["items"]] == [str(alerts["latest"].id)]

    @pytest.mark.parametrize("hours", ["0", "169"])
    async def test_hours_out_of_range_is_422(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff, hours: str
    ) -> None:
        org = await make_organization(session)

        response = await client.get(
            f"/admin/v1/organizations/{org.id}/alerts/recent",
            params={"hours": hours},
            headers=staff.support_auth,
        )

        assert response.status_code == 422

    async def test_unknown_organization_is_404(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        response = await client.get(
            f"/admin/v1/organizations/{uuid.uuid4()}/alerts/recent", headers=staff.support_auth
        )

        assert response.status_code == 404
