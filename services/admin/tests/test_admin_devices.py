"""Devices: register, import from CSV with a per-line report, transfer, disable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from admin_support import Staff, audit_entries
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.devices.models import DeviceState
from milepost_common.domain.positions.models import Position
from milepost_common.testing.factories import make_device, make_organization, make_position


class TestRegisterDevice:
    async def test_created(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)

        response = await client.post(
            f"/admin/v1/organizations/{org.id}/devices",
            json={"unique_id": "358240051111110", "name": "Van 12", "plate": "B-MP 12"},
            headers=staff.operator_auth,
        )

        assert response.status_code == 201
        body = response.json()
        assert body["unique_id"] == "358240051111110"
        assert body["org_id"] == str(org.id)
        assert body["speed_limit_kmh"] is None

    async def test_unique_id_taken_is_409(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        taken = await make_device(session)
        org = await make_organization(session)

        response = await client.post(
            f"/admin/v1/organizations/{org.id}/devices",
            json={"unique_id": taken.unique_id, "name": "Again"},
            headers=staff.operator_auth,
        )

        assert response.status_code == 409

    async def test_text_postgres_cannot_store_is_422(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)

        response = await client.post(
            f"/admin/v1/organizations/{org.id}/devices",
            json={"unique_id": "nul\u0000", "name": "Van"},
            headers=staff.operator_auth,
        )

        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "validation_failed"


class TestImportDevices:
    async def test_reports_every_line(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session, max_devices=3)
        taken = await make_device(session)
        body = (
            "unique_id,name,plate,speed_limit_kmh\n"
            "imp-1,Truck 1,AB-1,80\n"
            "imp-1,Truck 1 again,,\n"
            f"{taken.unique_id},Taken,,\n"
            "imp-2,Truck 2,,fast\n"
            "imp-3,Truck 3,,\n"
            "imp-4,Truck 4,,\n"
            "imp-5,Truck 5,,\n"
        )

        response = await client.post(
            f"/admin/v1/organizations/{org.id}/devices/import",
            content=body,
            headers={**staff.operator_auth, "Content-Type": "text/csv"},
        )

        assert response.status_code == 200, response.text
        report = response.json()
        assert (report["created"], report["failed"]) == (3, 4)
        outcome = {r["line"]: (r["status"], r["code"]) for r in report["rows"]}
        assert outcome == {
            2: ("created", None),
            3: ("failed", "duplicate_in_file"),
            4: ("failed", "unique_id_taken"),
            5: ("failed", "invalid_field"),
            6: ("created", None),
            7: ("created", None),
            8: ("failed", "device_limit"),
        }
        [entry] = await audit_entries(session, "devices.import")
        assert entry.diff["created"] == 3

    async def test_missing_header_is_400(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)

        response = await client.post(
            f"/admin/v1/organizations/{org.id}/devices/import",
            content="abc,def\n1,2\n",
            headers={**staff.operator_auth, "Content-Type": "text/csv"},
        )

        assert response.status_code == 400

    async def test_lines_ending_in_a_lone_carriage_return_are_read(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)

        response = await client.post(
            f"/admin/v1/organizations/{org.id}/devices/import",
            content="unique_id,name\rcr-1,Truck 1\rcr-2,Truck 2\r",
            headers={**staff.operator_auth, "Content-Type": "text/csv"},
        )

        assert response.status_code == 200, response.text
        assert response.json()["created"] == 2

    async def test_a_file_the_csv_reader_refuses_is_400(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)

        response = await client.post(
            f"/admin/v1/organizations/{org.id}/devices/import",
            content="unique_id,name\nbig," + "x" * 200_000 + "\n",
            headers={**staff.operator_auth, "Content-Type": "text/csv"},
        )

        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "bad_request"


class TestTransferDevice:
    async def test_future_data_only(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        source, target = await make_organization(session), await make_organization(session)
        device = await make_device(session, source)
        stored = await make_position(session, device, datetime.now(UTC) - timedelta(hours=1))
        key = (stored.device_id, stored.fix_time)
        source_id, target_id = source.id, target.id
        device_id = device.id
        session.add(DeviceState(device_id=device.id, org_id=source.id))
        await session.flush()

        response = await client.post(
            f"/admin/v1/devices/{device.id}/transfer",
            json={"org_id": str(target.id)},
            headers=staff.operator_auth,
        )

        assert response.status_code == 200
        assert response.json()["org_id"] == str(target.id)
        session.expire_all()
        position = await session.get(Position, key)
        assert position is not None
        assert position.org_id == source_id
        state = await session.get(DeviceState, device_id)
        assert state is not None
        assert state.org_id == target_id
        [entry] = await audit_entries(session, "devices.transfer")
        assert entry.org_id == source_id

    async def test_into_a_suspended_organization_is_409(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        device = await make_device(session)
        target = await make_organization(session, suspended_at=datetime.now(UTC))

        response = await client.post(
            f"/admin/v1/devices/{device.id}/transfer",
            json={"org_id": str(target.id)},
            headers=staff.operator_auth,
        )

        assert response.status_code == 409


class TestDisableDevice:
    async def test_disable_and_enable_idempotently(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        device = await make_device(session)

        for _ in range(2):
            response = await client.post(
                f"/admin/v1/devices/{device.id}/disable", headers=staff.operator_auth
            )
            assert response.status_code == 200
            assert response.json()["disabled"] is True
        enabled = await client.post(
            f"/admin/v1/devices/{device.id}/enable", headers=staff.operator_auth
        )

        assert enabled.json()["disabled"] is False
        assert len(await audit_entries(session, "devices.disable")) == 1
