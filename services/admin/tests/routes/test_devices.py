"""Devices: register, import from CSV with a per-line report, transfer, disable."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from admin_support import Staff, audit_entries
from sqlalchemy import func, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain.devices.models import Device, DeviceState
from milepost_common.domain.positions.models import Position
from milepost_common.testing.factories import (
    make_device,
    make_device_state,
    make_history,
    make_organization,
    make_position,
)


async def with_history(session: AsyncSession, device: Device, at: datetime) -> None:
    """A fix, a trip, a stop, an alert and the state, in the device's organization."""
    await make_history(session, device, at)
    await make_device_state(session, device, last_fix_time=at)


async def count(session: AsyncSession, table: str, device_id: uuid.UUID) -> int:
    query = text(f"SELECT count(*) FROM {table} WHERE device_id = :d")  # noqa: S608 - fixed names
    return int((await session.execute(query, {"d": device_id})).scalar_one())


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

    async def test_a_file_over_2_mb_within_the_limits_is_imported(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        # 9,500 rows (of at most 10,000) with long names, under the 8 MiB body limit: a
        # 2,000,000-character cap of its own answered 422.
        org = await make_organization(session)
        rows = [f"big-{i:05d},{'Long name ' * 19}{i:05d},B-{i:05d}" for i in range(9500)]
        body = "unique_id,name,plate\n" + "\n".join(rows) + "\n"
        assert len(body) > 2_000_000

        response = await client.post(
            f"/admin/v1/organizations/{org.id}/devices/import",
            content=body,
            headers={**staff.operator_auth, "Content-Type": "text/csv"},
        )

        assert response.status_code == 200, response.text[:300]
        assert (response.json()["created"], response.json()["failed"]) == (9500, 0)

    async def test_a_value_holding_a_nul_fails_its_line_only(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        body = "unique_id,name,plate\nnul-1,Truck 1,\nnul-2,Truck\x002,\nnul\x003,Truck 3,\n"

        response = await client.post(
            f"/admin/v1/organizations/{org.id}/devices/import",
            content=body.encode(),
            headers={**staff.operator_auth, "Content-Type": "text/csv"},
        )

        assert response.status_code == 200, response.text
        report = response.json()
        assert (report["created"], report["failed"]) == (1, 2)
        assert [(r["line"], r["unique_id"], r["code"], r["message"]) for r in report["rows"]] == [
            (2, "nul-1", None, None),
            (3, "nul-2", "invalid_field", "name: holds a NUL character."),
            (4, "nul\ufffd3", "invalid_field", "unique_id: holds a NUL character."),
        ]

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

    async def test_a_row_is_reported_at_the_line_it_starts_on(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        # A quoted value may hold a line break (a spreadsheet's cell of two lines): the row
        # is where an editor shows it begin, and the rows after it keep their numbers.
        org = await make_organization(session)
        body = 'unique_id,name,speed_limit_kmh\nml-1,"Truck\nsecond line",fast\n\nml-2,T,\n'

        response = await client.post(
            f"/admin/v1/organizations/{org.id}/devices/import",
            content=body,
            headers={**staff.operator_auth, "Content-Type": "text/csv"},
        )

        assert response.status_code == 200, response.text
        rows = [(r["line"], r["unique_id"], r["status"]) for r in response.json()["rows"]]
        assert rows == [(2, "ml-1", "failed"), (5, "ml-2", "created")]

    async def test_trailing_empty_rows_do_not_count_against_the_row_limit(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        # A spreadsheet saved as CSV often ends with rows of bare separators.
        org = await make_organization(session)
        rows = "".join(f"lim-{i},T,fast\n" for i in range(10_000))
        body = f"unique_id,name,speed_limit_kmh\n{rows},,\n,,\n"

        response = await client.post(
            f"/admin/v1/organizations/{org.id}/devices/import",
            content=body,
            headers={**staff.operator_auth, "Content-Type": "text/csv"},
        )

        assert response.status_code == 200, response.text[:300]
        assert response.json()["failed"] == 10_000

    async def test_a_row_without_a_name_says_the_name_is_required(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)

        response = await client.post(
            f"/admin/v1/organizations/{org.id}/devices/import",
            content="unique_id,name,plate\nnn-1,,AB-1\nnn-2\n",
            headers={**staff.operator_auth, "Content-Type": "text/csv"},
        )

        assert response.status_code == 200, response.text
        messages = [(r["line"], r["code"], r["message"]) for r in response.json()["rows"]]
        assert messages == [
            (2, "invalid_field", "name: Field required"),
            (3, "invalid_field", "name: Field required"),
        ]

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
        await make_device_state(session, device)

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
