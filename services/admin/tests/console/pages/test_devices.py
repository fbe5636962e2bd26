"""The console's device page (where the vehicle is, its status, trips and alerts), its edit
and delete forms, the device lists' status and last seen, and the organization's webhooks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from admin_support import Console, Staff, audit_entries, console_as, log_in
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.devices.models import Device, DeviceState
from milepost_common.domain.webhooks.models import WebhookDelivery, WebhookEndpoint
from milepost_common.testing.factories import (
    make_alert,
    make_device,
    make_device_state,
    make_organization,
    make_position,
    make_trip,
)


async def reporting(session: AsyncSession, device: Device, minutes_ago: float) -> datetime:
    """The device's latest fix, ``minutes_ago``, in its state (as the worker leaves it)."""
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=minutes_ago)
    await make_position(session, device, at, lat=48.8566, lon=2.3522)
    await make_device_state(
        session, device, last_fix_time=at, last_lat=48.8566, last_lon=2.3522, last_speed=42.0
    )
    return at


class TestDevicePage:
    async def test_shows_where_it_is_its_status_trips_and_alerts(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        device = await make_device(session, name="Van 7")
        seen = await reporting(session, device, minutes_ago=2)
        in_paris = {"start_lat": 48.85, "start_lon": 2.35, "end_lat": 48.86, "end_lon": 2.36}
        numbers = {"distance_m": 12_345.0, "duration_s": 1200.0, "max_speed": 77.0}
        start, end = seen - timedelta(minutes=30), seen - timedelta(minutes=10)
        await make_trip(session, device, start, end, **in_paris, **numbers)
        await make_alert(session, device, seen - timedelta(minutes=20))
        await log_in(client, staff.support)

        html = (await client.get(f"/admin/devices/{device.id}")).text

        assert 'id="device-status">online<' in html
        assert seen.strftime("%Y-%m-%d %H:%M:%S") in html
        assert "48.856600, 2.352200" in html
        assert 'id="device-map"' in html
        assert 'data-lat="48.8566"' in html
        assert f"/admin/organizations/{device.org_id}/map?vehicle={device.id}" in html
        assert "device_map.js" in html
        assert "12.3" in html  # the trip's kilometres
        assert "overspeed" in html
        # Support reads; the forms are the operators'.
        assert f"/admin/devices/{device.id}/edit" not in html
        assert f"/admin/devices/{device.id}/delete" not in html

    async def test_a_device_that_never_reported(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        device = await make_device(session)
        await log_in(client, staff.operator)

        html = (await client.get(f"/admin/devices/{device.id}")).text

        assert 'id="device-status">unknown<' in html
        assert "never (no fix yet)" in html
        assert 'id="device-map"' not in html
        assert f'action="/admin/devices/{device.id}/edit"' in html

    async def test_device_lists_show_status_and_last_seen(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        device = await make_device(session, org)
        quiet = await make_device(session, org)
        seen = await reporting(session, device, minutes_ago=60)
        await log_in(client, staff.support)
        shown = seen.strftime("%Y-%m-%d %H:%M:%S")

        for url in (f"/admin/devices?org_id={org.id}", f"/admin/organizations/{org.id}"):
            html = (await client.get(url)).text
            row = html[html.index(device.unique_id) :]
            row = row[: row.index("</tr>")]
            assert '"badge offline">offline<' in row, url
            assert shown in row, url
            quiet_row = html[html.index(quiet.unique_id) :]
            assert '"badge unknown">unknown<' in quiet_row[: quiet_row.index("</tr>")], url


class TestEditAndDelete:
    async def test_operator_edits_name_plate_and_speed_limit(
        self, client: httpx.AsyncClient, session: AsyncSession, operator_console: Console
    ) -> None:
        device = await make_device(session, name="Van", plate="B-1", speed_limit_kmh=80.0)

        response = await operator_console.submit(
            f"/admin/devices/{device.id}/edit",
            {"name": "Van 12", "plate": "", "speed_limit_kmh": "95"},
        )

        assert response.status_code == 303
        assert response.headers["location"] == f"/admin/devices/{device.id}"
        page = (await client.get(response.headers["location"])).text
        assert "Device saved." in page
        await session.refresh(device)
        assert (device.name, device.plate, device.speed_limit_kmh) == ("Van 12", None, 95.0)
        [entry] = await audit_entries(session, "devices.update")
        assert entry.diff["plate"] == ["B-1", None]

    async def test_a_bad_value_changes_nothing(
        self, session: AsyncSession, operator_console: Console
    ) -> None:
        device = await make_device(session, name="Van")

        response = await operator_console.submit(
            f"/admin/devices/{device.id}/edit", {"name": "Van", "speed_limit_kmh": "900"}
        )

        assert response.status_code == 422
        # Shown on the form, next to the field, with what was typed.
        assert 'id="edit-device-speed_limit_kmh-error"' in response.text
        assert 'value="900"' in response.text
        await session.refresh(device)
        assert device.speed_limit_kmh is None

    async def test_delete_asks_for_the_unique_id(
        self, client: httpx.AsyncClient, session: AsyncSession, operator_console: Console
    ) -> None:
        device = await make_device(session)
        await reporting(session, device, minutes_ago=5)
        device_id, org_id, unique_id = device.id, device.org_id, device.unique_id
        form = (await client.get(f"/admin/devices/{device_id}")).text
        assert 'aria-label="Delete device" data-confirm=' in form

        wrong = await operator_console.submit(
            f"/admin/devices/{device_id}/delete", {"confirm": "nope"}
        )
        assert wrong.status_code == 400
        assert 'id="delete-device-confirm-error"' in wrong.text
        assert await session.get(Device, device_id) is not None

        right = await operator_console.submit(
            f"/admin/devices/{device_id}/delete", {"confirm": unique_id}
        )

        assert right.status_code == 303
        assert right.headers["location"] == f"/admin/organizations/{org_id}"
        assert "and its history were deleted" in (await client.get(right.headers["location"])).text
        session.expire_all()
        assert await session.get(Device, device_id) is None
        assert await session.get(DeviceState, device_id) is None
        [entry] = await audit_entries(session, "devices.delete")
        assert entry.diff["deleted"]["positions"] == 1

    async def test_support_cannot_edit_or_delete(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        device = await make_device(session, name="Van")
        console = await console_as(client, staff.support)

        edit = await console.submit(f"/admin/devices/{device.id}/edit", {"name": "Other"})
        delete = await console.submit(
            f"/admin/devices/{device.id}/delete", {"confirm": device.unique_id}
        )

        assert (edit.status_code, delete.status_code) == (403, 403)
        await session.refresh(device)
        assert device.name == "Van"


class TestOrganizationWebhooks:
    async def test_lists_the_endpoints_and_their_recent_deliveries(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        endpoint = WebhookEndpoint(
            org_id=org.id,
            url="https://hooks.example.com:8443/milepost?token=s3cret",
            secret_encrypted="x",
            event_types=["trip.ended", "device.offline"],
        )
        session.add(endpoint)
        await session.flush()
        delivery = WebhookDelivery(
            org_id=org.id,
            endpoint_id=endpoint.id,
            event_id=endpoint.id,
            event_type="trip.ended",
            payload={},
            attempts=2,
            last_response_code=503,
        )
        session.add(delivery)
        await session.flush()
        await log_in(client, staff.support)

        html = (await client.get(f"/admin/organizations/{org.id}")).text

        section = html[html.index('id="webhooks"') : html.index("Recent ingest batches")]
        assert "https://hooks.example.com:8443/…" in section
        assert "s3cret" not in html
        assert "trip.ended, device.offline" in section
        assert f"/admin/webhook-deliveries?endpoint_id={endpoint.id}" in section
        assert f"/admin/webhook-deliveries/{delivery.id}" in section
        assert ">503<" in section
