"""After a device transfer, the receiving organization sees nothing of the old one's data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.devices import tenure as device_tenure
from milepost_common.testing.factories import (
    make_alert,
    make_device,
    make_device_state,
    make_operator,
    make_position,
    make_trip,
    principal_for,
)
from services.api.tests.api_support import Bearer, Team


class TestAfterTransfer:
    async def test_the_new_organization_sees_none_of_the_old_ones_data(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        other_team: Team,
        bearer: Bearer,
    ) -> None:
        device = await make_device(session, team.org)
        last = datetime.now(UTC) - timedelta(minutes=2)
        await make_position(session, device, last)
        await make_device_state(session, device, last_fix_time=last, last_lat=52.5, last_lon=13.4)
        await make_alert(session, device, last, lat=52.5, lon=13.4)
        from_there = {"start_lat": 52.4, "start_lon": 13.3, "end_lat": 52.5, "end_lon": 13.4}
        await make_trip(session, device, last - timedelta(hours=1), **from_there)
        operator = principal_for(await make_operator(session))

        await device_tenure.transfer_device(session, operator, device, other_team.org)

        viewer = bearer(other_team.viewer)
        latest = await client.get("/api/v1/positions/latest", headers=viewer)
        vehicle = await client.get(f"/api/v1/vehicles/{device.id}", headers=viewer)
        history = await client.get(f"/api/v1/vehicles/{device.id}/positions", headers=viewer)
        alerts = await client.get(
            "/api/v1/alerts", params={"vehicle_id": str(device.id)}, headers=viewer
        )
        trips = await client.get(
            "/api/v1/trips", params={"vehicle_id": str(device.id)}, headers=viewer
        )
        assert latest.json()["items"] == []
        assert (vehicle.json()["last_fix_time"], vehicle.json()["status"]) == (None, "unknown")
        assert history.json()["items"] == []
        assert alerts.json()["items"] == []
        assert trips.json()["items"] == []
        gone = await client.get(f"/api/v1/vehicles/{device.id}", headers=bearer(team.viewer))
        assert gone.status_code == 404
