"""Editing and deleting a device through the admin JSON API: roles, 404, the history that
goes with it, the 409 while it holds another organization's history, the audit entries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from admin_support import Staff, audit_entries
from sqlalchemy import func, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain.alert_rules.models import AlertRule
from milepost_common.domain.alerts.models import Alert, AlertType
from milepost_common.domain.devices.models import Device, DeviceState
from milepost_common.domain.positions.models import Position
from milepost_common.domain.trips.models import Stop, Trip
from milepost_common.testing.factories import make_device, make_organization, make_position


async def with_history(session: AsyncSession, device: Device, at: datetime) -> None:
    """A fix, a trip, a stop, an alert and the state, in the device's organization."""
    await make_position(session, device, at)
    rule = AlertRule(org_id=device.org_id, name="fast", type=AlertType.OVERSPEED, params={})
    session.add(rule)
    await session.flush()
    session.add_all(
        [
            Trip(
                org_id=device.org_id,
                device_id=device.id,
                start_time=at,
                start_lat=52.0,
                start_lon=13.0,
                end_lat=52.1,
                end_lon=13.1,
            ),
            Stop(org_id=device.org_id, device_id=device.id, start_time=at, lat=52.0, lon=13.0),
            Alert(
                org_id=device.org_id,
                device_id=device.id,
                rule_id=rule.id,
                type=AlertType.OVERSPEED,
                occurred_at=at,
            ),
            DeviceState(device_id=device.id, org_id=device.org_id, last_fix_time=at),
        ]
    )
    await session.flush()


async def count(session: AsyncSession, table: str, device_id: uuid.UUID) -> int:
    query = text(f"SELECT count(*) FROM {table} WHERE device_id = :d")  # noqa: S608 - fixed names
    return int((await session.execute(query, {"d": device_id})).scalar_one())


class TestUpdateDevice:
    async def test_operator_edits_name_plate_and_speed_limit(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        device = await make_device(session, name="Van", plate="B-1")

        response = await client.patch(
            f"/admin/v1/devices/{device.id}",
            json={"name": "Van 12", "plate": None, "speed_limit_kmh": 90},
            headers=staff.operator_auth,
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["name"], body["plate"], body["speed_limit_kmh"]) == ("Van 12", None, 90.0)
        [entry] = await audit_entries(session, "devices.update")
        assert entry.org_id == device.org_id
        assert entry.target_id == str(device.id)
        assert entry.diff == {
            "name": ["Van", "Van 12"],
            "plate": ["B-1", None],
            "speed_limit_kmh": [None, 90.0],
        }

    async def test_nothing_changed_is_not_audited(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        device = await make_device(session, name="Van")

        response = await client.patch(
            f"/admin/v1/devices/{device.id}", json={"name": "Van"}, headers=staff.operator_auth
        )

        assert response.status_code == 200
        assert await audit_entries(session, "devices.update") == []

    async def test_bad_values_are_422(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        device = await make_device(session)
        for body in ({"speed_limit_kmh": 0}, {"name": ""}, {"unique_id": "other"}):
            response = await client.patch(
                f"/admin/v1/devices/{device.id}", json=body, headers=staff.operator_auth
            )
            assert response.status_code == 422, body
            assert response.json()["error"]["code"] == "validation_failed"


class TestRoles:
    async def test_support_reads_and_cannot_edit_or_delete(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        device = await make_device(session)
        url = f"/admin/v1/devices/{device.id}"

        read = await client.get(url, headers=staff.support_auth)
        edit = await client.patch(url, json={"name": "x"}, headers=staff.support_auth)
        delete = await client.delete(url, headers=staff.support_auth)
        anonymous = await client.delete(url)

        assert read.status_code == 200
        assert (edit.status_code, delete.status_code) == (403, 403)
        assert anonymous.status_code == 401
        assert await session.get(Device, device.id) is not None

    async def test_an_unknown_device_is_404(self, client: httpx.AsyncClient, staff: Staff) -> None:
        url = f"/admin/v1/devices/{uuid.uuid4()}"

        edit = await client.patch(url, json={"name": "x"}, headers=staff.operator_auth)
        delete = await client.delete(url, headers=staff.operator_auth)

        assert (edit.status_code, delete.status_code) == (404, 404)
        assert delete.json()["error"]["code"] == "not_found"


class TestDeleteDevice:
    async def test_deletes_the_device_with_its_history(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        device = await make_device(session)
        other = await make_device(session, await make_organization(session))
        at = datetime.now(UTC) - timedelta(hours=1)
        await with_history(session, device, at)
        await with_history(session, other, at)
        device_id, org_id, unique_id = device.id, device.org_id, device.unique_id

        response = await client.delete(
            f"/admin/v1/devices/{device_id}",
            params={"confirm": unique_id},
            headers=staff.operator_auth,
        )

        assert response.status_code == 204, response.text
        gone = await client.get(f"/admin/v1/devices/{device_id}", headers=staff.operator_auth)
        assert gone.status_code == 404
        for table in ("positions", "trips", "stops", "alerts", "device_state"):
            assert await count(session, table, device_id) == 0, table
            assert await count(session, table, other.id) == 1, table
        [entry] = await audit_entries(session, "devices.delete")
        assert (entry.org_id, entry.target_id) == (org_id, str(device_id))
        assert entry.diff["unique_id"] == unique_id
        assert entry.diff["deleted"] == {"positions": 1, "trips": 1, "stops": 1, "alerts": 1}

    async def test_a_wrong_confirmation_is_400(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        device = await make_device(session)

        response = await client.delete(
            f"/admin/v1/devices/{device.id}",
            params={"confirm": "not-it"},
            headers=staff.operator_auth,
        )

        assert response.status_code == 400
        assert response.json()["error"]["code"] == "bad_request"
        assert await session.get(Device, device.id) is not None

    async def test_refused_while_it_holds_another_organizations_history(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        first, second = await make_organization(session), await make_organization(session)
        device = await make_device(session, first)
        await with_history(session, device, datetime.now(UTC) - timedelta(hours=2))
        moved = await client.post(
            f"/admin/v1/devices/{device.id}/transfer",
            json={"org_id": str(second.id)},
            headers=staff.operator_auth,
        )
        assert moved.status_code == 200

        refused = await client.delete(f"/admin/v1/devices/{device.id}", headers=staff.operator_auth)

        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "conflict"
        assert await count(session, "positions", device.id) == 1
        assert await audit_entries(session, "devices.delete") == []
        # Once the first organization's history is gone (its retention, say), it can go.
        for table in ("positions", "trips", "stops", "alerts"):
            await session.execute(
                text(f"DELETE FROM {table} WHERE device_id = :d"),  # noqa: S608 - fixed names
                {"d": device.id},
            )
        deleted = await client.delete(f"/admin/v1/devices/{device.id}", headers=staff.operator_auth)
        assert deleted.status_code == 204
        left = await session.scalar(
            select(func.count()).select_from(Position).where(col(Position.device_id) == device.id)
        )
        assert left == 0
