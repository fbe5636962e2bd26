"""Organizations: create, settings, suspension (effective on the next request), export,
hard delete."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
from admin_support import Staff, audit_actions, audit_entries, bearer
from sqlalchemy import func, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_admin.settings import AdminSettings
from milepost_common.auth import Realm
from milepost_common.domain.devices import tenure as device_tenure
from milepost_common.domain.devices.models import Device
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.positions.models import Position
from milepost_common.domain.principals import PrincipalResolver
from milepost_common.domain.sessions import service as sessions
from milepost_common.domain.sessions.models import RefreshToken
from milepost_common.domain.trips.models import Trip
from milepost_common.errors import Unauthorized
from milepost_common.testing.factories import (
    make_alert_rule,
    make_api_key,
    make_device,
    make_organization,
    make_position,
    make_trip,
    make_user,
    make_webhook_delivery,
    principal_for,
)
from milepost_common.testing.plugin import token_codec

__all__ = ["bearer"]


async def unrounded_trip(session: AsyncSession, device: Device, start: datetime) -> Trip:
    """A trip of ten minutes with the unrounded numbers the worker stores."""
    numbers = {"distance_m": 8784.736612982577, "avg_speed": 52.708412345, "max_speed": 96.04999}
    end = start + timedelta(seconds=600.4)
    return await make_trip(session, device, start, end, duration_s=600.4, **numbers)


class TestCreateOrganization:
    async def test_created_with_defaults_and_audited(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        response = await client.post(
            "/admin/v1/organizations",
            json={"name": "Acme Logistics"},
            headers={**staff.operator_auth, "X-Request-ID": "req-create-org-1"},
        )

        assert response.status_code == 201
        body = response.json()
        assert body["name"] == "Acme Logistics"
        assert body["timezone"] == "UTC"
        assert body["suspended"] is False
        [entry] = await audit_entries(session, "organizations.create")
        assert entry.actor_id == staff.operator.id
        assert entry.org_id == uuid.UUID(body["id"])
        assert entry.request_id == "req-create-org-1"
        assert entry.ip

    async def test_invalid_timezone_is_422(self, client: httpx.AsyncClient, staff: Staff) -> None:
        response = await client.post(
            "/admin/v1/organizations",
            json={"name": "Acme", "timezone": "Mars/Olympus"},
            headers=staff.operator_auth,
        )

        assert response.status_code == 422
        assert response.json()["error"]["code"] == "validation_failed"


class TestUpdateOrganization:
    async def test_settings_change_with_a_diff(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)

        response = await client.patch(
            f"/admin/v1/organizations/{org.id}",
            json={"timezone": "Europe/Berlin", "retention_days": 90, "max_devices": 5},
            headers=staff.operator_auth,
        )

        assert response.status_code == 200
        assert response.json()["timezone"] == "Europe/Berlin"
        [entry] = await audit_entries(session, "organizations.update")
        assert entry.diff == {
            "timezone": ["UTC", "Europe/Berlin"],
            "retention_days": [365, 90],
            "max_devices": [None, 5],
        }

    async def test_unknown_organization_is_404(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        response = await client.patch(
            f"/admin/v1/organizations/{uuid.uuid4()}", json={}, headers=staff.operator_auth
        )

        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


class TestSuspendOrganization:
    async def test_idempotent_and_audited_once(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        url = f"/admin/v1/organizations/{org.id}/suspend"

        first = await client.post(url, headers=staff.operator_auth)
        second = await client.post(url, headers=staff.operator_auth)

        assert first.status_code == second.status_code == 200
        assert first.json()["suspended"] is second.json()["suspended"] is True
        assert await audit_actions(session, action="organizations.suspend") == [
            "organizations.suspend"
        ]

    async def test_tokens_keys_and_refresh_tokens_stop_at_the_next_request(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        staff: Staff,
        admin_settings: AdminSettings,
    ) -> None:
        org = await make_organization(session)
        owner = await make_user(session, org)
        issued = await make_api_key(session, org)
        pair = await sessions.issue_token_pair(
            session, token_codec(), admin_settings.auth, owner, Realm.API
        )
        resolver = PrincipalResolver(token_codec(), cache_ttl_s=0)
        assert (await resolver.from_api_key(session, issued.secret)).org_id == org.id
        assert (await resolver.from_access_token(session, pair.access_token, Realm.API)).id

        response = await client.post(
            f"/admin/v1/organizations/{org.id}/suspend", headers=staff.operator_auth
        )

        assert response.status_code == 200
        session.expire_all()  # the next request reads afresh
        with pytest.raises(Unauthorized):
            await resolver.from_api_key(session, issued.secret)
        with pytest.raises(Unauthorized):
            await resolver.from_access_token(session, pair.access_token, Realm.API)
        revoked = await session.scalar(
            select(col(RefreshToken.revoked_at)).where(col(RefreshToken.user_id) == owner.id)
        )
        assert revoked is not None

    async def test_reactivate_lifts_it_idempotently(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        staff: Staff,
        admin_settings: AdminSettings,
    ) -> None:
        org = await make_organization(session, suspended_at=datetime.now(UTC))
        issued = await make_api_key(session, org)
        url = f"/admin/v1/organizations/{org.id}/reactivate"

        first = await client.post(url, headers=staff.operator_auth)
        second = await client.post(url, headers=staff.operator_auth)

        assert first.status_code == second.status_code == 200
        assert second.json()["suspended"] is False
        session.expire_all()
        resolver = PrincipalResolver(None, cache_ttl_s=0)
        assert (await resolver.from_api_key(session, issued.secret)).org_id == org.id


class TestDeleteOrganization:
    async def test_active_organization_cannot_be_deleted(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)

        response = await client.delete(
            f"/admin/v1/organizations/{org.id}",
            params={"confirm": org.name},
            headers=staff.operator_auth,
        )

        assert response.status_code == 409

    async def test_confirmation_must_match(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session, suspended_at=datetime.now(UTC))

        response = await client.delete(
            f"/admin/v1/organizations/{org.id}",
            params={"confirm": "something else"},
            headers=staff.operator_auth,
        )

        assert response.status_code == 400
        assert await session.get(Organization, org.id) is not None

    async def test_deletes_everything_but_the_audit_record(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session, suspended_at=datetime.now(UTC))
        device = await make_device(session, org)
        await make_user(session, org)
        await make_api_key(session, org)
        await make_position(session, device, datetime.now(UTC) - timedelta(hours=1))
        other = await make_organization(session)
        kept = await make_position(
            session, await make_device(session, other), datetime.now(UTC) - timedelta(hours=1)
        )

        response = await client.delete(
            f"/admin/v1/organizations/{org.id}",
            params={"confirm": org.name},
            headers=staff.operator_auth,
        )

        assert response.status_code == 204
        session.expunge_all()
        assert await session.get(Organization, org.id) is None
        count = await session.scalar(
            select(func.count()).select_from(Position).where(col(Position.org_id) == org.id)
        )
        assert count == 0
        assert (
            await session.scalar(
                select(func.count())
                .select_from(Position)
                .where(col(Position.device_id) == kept.device_id)
            )
            == 1
        )
        [entry] = await audit_entries(session, "organizations.delete")
        assert entry.diff["deleted"] == {"devices": 1, "positions": 1}
        users = await session.scalar(
            text("SELECT count(*) FROM users WHERE org_id = :o"), {"o": org.id}
        )
        assert users == 0

    async def test_a_device_transferred_in_keeps_its_old_organizations_history(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        source, leaving = await make_organization(session), await make_organization(session)
        device = await make_device(session, source)
        history = await make_position(session, device, datetime.now(UTC) - timedelta(hours=2))
        key = (history.device_id, history.fix_time)
        device_id, source_id = device.id, source.id
        leaving_id, leaving_name = leaving.id, leaving.name
        moved = await client.post(
            f"/admin/v1/devices/{device_id}/transfer",
            json={"org_id": str(leaving_id)},
            headers=staff.operator_auth,
        )
        assert moved.status_code == 200
        suspended = await client.post(
            f"/admin/v1/organizations/{leaving_id}/suspend", headers=staff.operator_auth
        )
        assert suspended.status_code == 200

        refused = await client.delete(
            f"/admin/v1/organizations/{leaving_id}",
            params={"confirm": leaving_name},
            headers=staff.operator_auth,
        )

        assert refused.status_code == 409
        assert [d["loc"] for d in refused.json()["error"]["details"]] == [
            ["devices", str(device_id)]
        ]
        session.expire_all()
        assert await session.get(Position, key) is not None

        # Moved back out, the organization can go, and the history stays where it belongs.
        back = await client.post(
            f"/admin/v1/devices/{device_id}/transfer",
            json={"org_id": str(source_id)},
            headers=staff.operator_auth,
        )
        assert back.status_code == 200
        deleted = await client.delete(
            f"/admin/v1/organizations/{leaving_id}",
            params={"confirm": leaving_name},
            headers=staff.operator_auth,
        )
        assert deleted.status_code == 204
        session.expire_all()
        assert await session.get(Position, key) is not None


class TestExportOrganization:
    async def test_ndjson_has_every_kind_and_no_secret(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        staff: Staff,
        admin_settings: AdminSettings,
    ) -> None:
        org = await make_organization(session)
        device = await make_device(session, org)
        await make_position(session, device, datetime.now(UTC) - timedelta(minutes=5))
        await make_user(session, org)
        issued = await make_api_key(session, org)
        await make_webhook_delivery(session, org, url="https://hooks.example/in?token=THEIRS")

        response = await client.post(
            f"/admin/v1/organizations/{org.id}/export", headers=staff.operator_auth
        )

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [orjson.loads(line) for line in response.content.splitlines()]
        kinds = {line["type"] for line in lines}
        assert {"organization", "users", "devices", "api_keys", "positions"} <= kinds
        assert issued.secret not in response.text
        assert "password_hash" not in response.text
        assert "key_hash" not in response.text
        # A receiver's URL as operators see it elsewhere: its path and query may carry its
        # token.
        [endpoint] = [line["data"] for line in lines if line["type"] == "webhook_endpoints"]
        assert endpoint["url"] == "https://hooks.example/…"
        assert "THEIRS" not in response.text
        assert await audit_actions(session, action="organizations.export") == [
            "organizations.export"
        ]

    async def test_csv_of_one_kind(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        devices = [await make_device(session, org) for _ in range(3)]

        response = await client.post(
            f"/admin/v1/organizations/{org.id}/export",
            params={"format": "csv", "kind": "devices"},
            headers=staff.operator_auth,
        )

        assert response.status_code == 200
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert sorted(r["unique_id"] for r in rows) == sorted(d.unique_id for d in devices)

    async def test_csv_cells_a_spreadsheet_would_run_are_text(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        # The tenant names its devices; an operator opens the export in a spreadsheet.
        org = await make_organization(session)
        await make_device(session, org, name="@SUM(1+1)*cmd|' /C calc'!A0")

        response = await client.post(
            f"/admin/v1/organizations/{org.id}/export",
            params={"format": "csv", "kind": "devices"},
            headers=staff.operator_auth,
        )

        (row,) = csv.DictReader(io.StringIO(response.text))
        assert row["name"] == "'@SUM(1+1)*cmd|' /C calc'!A0"

    async def test_csv_without_kind_is_422(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)

        response = await client.post(
            f"/admin/v1/organizations/{org.id}/export",
            params={"format": "csv"},
            headers=staff.operator_auth,
        )

        assert response.status_code == 422


class TestListOrganizations:
    async def test_cursor_pages_and_search(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        marker = uuid.uuid4().hex[:8]
        for n in range(3):
            await make_organization(session, name=f"Fleet {marker} {n}")

        first = await client.get(
            "/admin/v1/organizations", params={"q": marker, "limit": 2}, headers=staff.support_auth
        )
        second = await client.get(
            "/admin/v1/organizations",
            params={"q": marker, "limit": 2, "cursor": first.json()["next_cursor"]},
            headers=staff.support_auth,
        )

        names = [o["name"] for o in first.json()["items"] + second.json()["items"]]
        assert names == [f"Fleet {marker} {n}" for n in range(3)]
        assert second.json()["next_cursor"] is None

    async def test_bad_cursor_is_422(self, client: httpx.AsyncClient, staff: Staff) -> None:
        response = await client.get(
            "/admin/v1/organizations", params={"cursor": "garbage!"}, headers=staff.support_auth
        )

        assert response.status_code == 422


class TestTimelineRows:
    async def test_csv_trips_are_rounded_and_named(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        device = await make_device(session, org, name="Van 7")
        await unrounded_trip(session, device, datetime(2026, 1, 1, 8, tzinfo=UTC))

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

    async def test_settings_and_rules_are_rounded_as_every_answer_shows_them(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        # Only the timeline's rows were rounded: 80.04 km/h went out as the API shows 80.0.
        org = await make_organization(session, default_speed_limit_kmh=50.04)
        await make_device(session, org, speed_limit_kmh=80.04, trip_min_distance_m=200.06)
        await make_alert_rule(session, org.id, params={"limit_kmh": 90.04, "min_duration_s": 9.6})

        response = await client.post(
            f"/admin/v1/organizations/{org.id}/export", headers=staff.operator_auth
        )

        rows = {
            line["type"]: line["data"]
            for line in (orjson.loads(line) for line in response.content.splitlines())
        }
        assert rows["organization"]["default_speed_limit_kmh"] == 50.0
        assert (rows["devices"]["speed_limit_kmh"], rows["devices"]["trip_min_distance_m"]) == (
            80.0,
            200.1,
        )
        assert rows["alert_rules"]["params"] == {"limit_kmh": 90.0, "min_duration_s": 10}

    async def test_rows_of_a_tenure_that_ended_carry_no_name(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org, other = await make_organization(session), await make_organization(session)
        device = await make_device(session, org, name="Van 7")
        fix_time = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        await make_position(session, device, fix_time, speed=1.00008)
        await unrounded_trip(session, device, fix_time - timedelta(hours=1))
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
