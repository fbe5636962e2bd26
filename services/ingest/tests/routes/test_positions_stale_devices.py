"""``POST /ingest/v1/positions`` while the ingest's device cache is stale: a device
transferred, deleted or disabled within its few seconds. The insert leaves such a fix out;
it is rejected with the code an uncached look-up gives, never counted as a duplicate (which
tells the client it was stored)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.devices import tenure as device_tenure
from milepost_common.domain.devices.models import Device
from milepost_common.domain.organizations.models import Organization
from milepost_common.testing.factories import (
    make_device,
    make_operator,
    make_organization,
    principal_for,
)
from services.ingest.tests.routes.positions_support import Fix, batch_row, push, stored


async def warm(client: httpx.AsyncClient, auth: dict[str, str], device: Device, fix: Fix) -> None:
    """A push naming the device, so the ingest's cache holds it; nothing is stored."""
    response = await push(client, auth, [fix(device, lat=0.0, lon=0.0)])
    assert response.json()["errors"][0]["code"] == "invalid_coordinates"


class TestStaleDeviceCache:
    async def test_a_device_transferred_away_is_unknown_not_duplicate(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        org: Organization,
        device: Device,
        fix: Fix,
    ) -> None:
        moved = await make_device(session, org)
        await warm(client, auth, moved, fix)
        operator = principal_for(await make_operator(session))
        await device_tenure.transfer_device(
            session, operator, moved, await make_organization(session)
        )
        later = datetime.now(UTC) + timedelta(seconds=1)
        items = [fix(device, lat=0.0, lon=0.0), fix(moved, later), fix(device, later)]

        response = await push(client, auth, items)

        body = response.json()
        assert (body["accepted"], body["rejected"], body["duplicates"]) == (1, 2, 0)
        assert body["errors"] == [
            {"index": 0, "code": "invalid_coordinates", "message": "(0, 0) is not a real fix."},
            {"index": 1, "code": "unknown_device", "message": "Unknown device."},
        ]
        assert [p.device_id for p in await stored(session, body["batch_id"])] == [device.id]
        batch = await batch_row(session, body["batch_id"])
        assert (batch.accepted, batch.rejected, batch.duplicates) == (1, 2, 0)
        assert batch.errors == body["errors"]
        assert [(r["index"], r["code"], r["item"]) for r in batch.rejected_items] == [
            (0, "invalid_coordinates", items[0]),
            (1, "unknown_device", items[1]),
        ]
        assert batch.rejected_items_expire_at is not None
        shown = await client.get(f"/ingest/v1/batches/{body['batch_id']}", headers=auth)
        assert (shown.json()["rejected"], shown.json()["duplicates"]) == (2, 0)

    async def test_a_deleted_device_is_unknown(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        org: Organization,
        fix: Fix,
    ) -> None:
        gone = await make_device(session, org)
        await warm(client, auth, gone, fix)
        operator = principal_for(await make_operator(session))
        await device_tenure.delete_device(session, operator, gone)

        response = await push(client, auth, [fix(gone)])

        body = response.json()
        assert (body["accepted"], body["rejected"], body["duplicates"]) == (0, 1, 0)
        assert body["errors"] == [
            {"index": 0, "code": "unknown_device", "message": "Unknown device."}
        ]

    async def test_a_device_disabled_meanwhile_is_unknown(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        org: Organization,
        fix: Fix,
    ) -> None:
        # As without the cache (test_disabled_device_is_unknown): nothing stored.
        disabled = await make_device(session, org)
        await warm(client, auth, disabled, fix)
        disabled.disabled = True
        session.add(disabled)
        await session.flush()

        response = await push(client, auth, [fix(disabled)])

        body = response.json()
        assert (body["accepted"], body["rejected"], body["duplicates"]) == (0, 1, 0)
        assert body["errors"] == [
            {"index": 0, "code": "unknown_device", "message": "The device is disabled."}
        ]
        assert await stored(session, body["batch_id"]) == []

    async def test_a_fix_before_a_tenure_begun_meanwhile_is_before_transfer(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        org: Organization,
        fix: Fix,
    ) -> None:
        # Away and back within the cache's seconds: the organization's tenure starts again now.
        device = await make_device(session, org)
        await warm(client, auth, device, fix)
        operator = principal_for(await make_operator(session))
        await device_tenure.transfer_device(
            session, operator, device, await make_organization(session)
        )
        await device_tenure.transfer_device(session, operator, device, org)
        assert device.assigned_at is not None
        earlier = device.assigned_at - timedelta(minutes=1)

        response = await push(client, auth, [fix(device, earlier)])

        body = response.json()
        assert (body["accepted"], body["rejected"], body["duplicates"]) == (0, 1, 0)
        since = device.assigned_at.isoformat().replace("+00:00", "Z")
        assert body["errors"] == [
            {
                "index": 0,
                "code": "before_transfer",
                "message": f"fix_time is before {since}, when the device joined this organization.",
            }
        ]
