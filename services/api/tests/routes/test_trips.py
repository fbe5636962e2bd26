from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.testing.factories import make_device, make_position, make_stop
from services.api.tests.api_support import Bearer, Team, trip

JAN1 = datetime(2026, 1, 1, tzinfo=UTC)


class TestTrips:
    async def test_list_filters_and_detail_with_route(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        one = await make_device(session, team.org)
        two = await make_device(session, team.org)
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
        first = await trip(session, one, start, 30, 20, 80)
        await trip(session, one, start + timedelta(hours=1), 10, 5, 50)
        await trip(session, two, start, 15, 12, 90)
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
        await make_stop(
            session, device, JAN1, JAN1 + timedelta(hours=1), lat=1, lon=2, duration_s=3600
        )
        response = await client.get(
            "/api/v1/stops", params={"vehicle_id": str(device.id)}, headers=bearer(team.viewer)
        )
        assert response.json()["items"][0]["duration_s"] == 3600

    async def test_a_cursor_is_for_the_sort_it_came_with(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        # A time cursor sent with sort=distance_m was compared with a float column: a 500.
        device = await make_device(session, team.org)
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
        for hour, km in ((0, 5), (1, 20), (2, 12)):
            await trip(session, device, start + timedelta(hours=hour), 10, km, 50)
        headers = bearer(team.viewer)
        by_time = await client.get("/api/v1/trips", params={"limit": 1}, headers=headers)
        cursor = by_time.json()["next_cursor"]

        same = await client.get(
            "/api/v1/trips", params={"limit": 1, "cursor": cursor}, headers=headers
        )
        other = await client.get(
            "/api/v1/trips",
            params={"limit": 1, "cursor": cursor, "sort": "-distance_m"},
            headers=headers,
        )

        assert same.json()["items"][0]["distance_m"] == 20000.0
        assert other.status_code == 422
        assert other.json()["error"]["code"] == "validation_failed"
