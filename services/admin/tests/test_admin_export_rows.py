"""An organization's export shows measurements as every answer does (rounded) and names the
vehicle of each timeline row, never a name chosen after the device left (issue 15, items 11
and 16)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import httpx
import orjson
from admin_support import Staff
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.devices import tenure as device_tenure
from milepost_common.domain.trips.models import Trip
from milepost_common.testing.factories import (
    make_device,
    make_organization,
    make_position,
    principal_for,
)


def trip(org_id: object, device_id: object, start: datetime) -> Trip:
    return Trip(
        org_id=org_id,
        device_id=device_id,
        start_time=start,
        end_time=start + timedelta(seconds=600.4),
        start_lat=52.5,
        start_lon=13.4,
        end_lat=52.6,
        end_lon=13.5,
        distance_m=8784.736612982577,
        duration_s=600.4,
        avg_speed=52.708412345,
        max_speed=96.04999,
    )


class TestTimelineRows:
    async def test_csv_trips_are_rounded_and_named(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        device = await make_device(session, org, name="Van 7")
        session.add(trip(org.id, device.id, datetime(2026, 1, 1, 8, tzinfo=UTC)))
        await session.flush()

        response = await client.post(
            f"/admin/v1/organizations/{org.id}/export",
            params={"format": "csv", "kind": "trips"},
            headers=staff.operator_auth,
        )

        (row,) = csv.DictReader(io.StringIO(response.text))
        assert list(row)[2:4] == ["device_id", "vehicle_name"]
        assert row["vehicle_name"] == "Van 7"
        assert (row["distance_m"], row["duration_s"], row["avg_speed"], row["max_speed"]) == (
            "8784.7",
            "600",
            "52.7",
            "96.0",
        )

    async def test_rows_of_a_tenure_that_ended_carry_no_name(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org, other = await make_organization(session), await make_organization(session)
        device = await make_device(session, org, name="Van 7")
        fix_time = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        await make_position(session, device, fix_time, speed=1.00008)
        session.add(trip(org.id, device.id, fix_time - timedelta(hours=1)))
        await session.flush()
        await device_tenure.transfer_device(session, principal_for(staff.operator), device, other)
        device.name = "Their truck"
        session.add(device)
        await session.flush()

        response = await client.post(
            f"/admin/v1/organizations/{org.id}/export", headers=staff.operator_auth
        )

        lines = [orjson.loads(line) for line in response.content.splitlines()]
        timeline = [line["data"] for line in lines if line["type"] in ("trips", "positions")]
        assert len(timeline) == 2
        assert [row["vehicle_name"] for row in timeline] == [None, None]
        position = next(line["data"] for line in lines if line["type"] == "positions")
        assert position["speed"] == 1.0
        assert "Their truck" not in response.text
