from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from milepost_common.domain.audit.models import AuditEntry
from milepost_common.testing.factories import make_device, make_device_state
from services.api.tests.api_support import Bearer, Team, error_code


class TestListVehicles:
    async def test_search_filters_and_sorts(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        await make_device(session, team.org, name="Bravo", plate="B-1")
        alpha = await make_device(session, team.org, name="Alpha", plate="XY-42")
        await make_device(session, team.org, name="Charlie", disabled=True)
        await make_device_state(session, alpha, last_fix_time=datetime.now(UTC))
        headers = bearer(team.viewer)

        found = await client.get("/api/v1/vehicles", params={"q": "xy-4"}, headers=headers)
        by_name = await client.get("/api/v1/vehicles", params={"sort": "-name"}, headers=headers)
        enabled = await client.get(
            "/api/v1/vehicles", params={"disabled": "false"}, headers=headers
        )
        online = await client.get("/api/v1/vehicles", params={"status": "online"}, headers=headers)

        assert [v["name"] for v in found.json()["items"]] == ["Alpha"]
        assert found.json()["items"][0]["status"] == "online"
        assert [v["name"] for v in by_name.json()["items"]] == ["Charlie", "Bravo", "Alpha"]
        assert {v["name"] for v in enabled.json()["items"]} == {"Alpha", "Bravo"}
        assert [v["name"] for v in online.json()["items"]] == ["Alpha"]

    async def test_pages_follow_the_cursor(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        for i in range(5):
            await make_device(session, team.org, name=f"V{i}")
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (
                await client.get("/api/v1/vehicles", params=params, headers=bearer(team.owner))
            ).json()
            seen += [v["name"] for v in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == [f"V{i}" for i in range(5)]
        assert len(seen) == 5

    async def test_a_cursor_of_another_sort_is_422_not_a_page_repeated(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        for name in ("Charlie", "Alpha", "Bravo"):
            await make_device(session, team.org, name=name)
        headers = bearer(team.owner)
        newest = await client.get("/api/v1/vehicles", params={"limit": 1}, headers=headers)

        by_name = await client.get(
            "/api/v1/vehicles",
            params={"limit": 1, "sort": "name", "cursor": newest.json()["next_cursor"]},
            headers=headers,
        )

        assert by_name.status_code == 422
        assert error_code(by_name) == "validation_failed"

    async def test_bad_sort_limit_or_cursor_is_422(
        self, client: httpx.AsyncClient, team: Team, bearer: Bearer
    ) -> None:
        headers = bearer(team.owner)
        for params in ({"sort": "plate"}, {"limit": 0}, {"limit": 1001}, {"cursor": "nope!"}):
            response = await client.get("/api/v1/vehicles", params=params, headers=headers)
            assert response.status_code == 422, params
            assert error_code(response) == "validation_failed"


class TestRegisterDevice:
    async def test_owner_registers_and_it_is_audited(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        response = await client.post(
            "/api/v1/vehicles",
            json={"unique_id": "imei-0001", "name": "Van 1", "plate": "B-MP 1"},
            headers=bearer(team.owner),
        )

        assert response.status_code == 201
        body = response.json()
        assert body["status"] == "unknown"
        assert body["last_fix_time"] is None
        entries = (
            await session.scalars(select(AuditEntry).where(AuditEntry.action == "devices.register"))
        ).all()
        assert [e.target_id for e in entries] == [body["id"]]

    async def test_duplicate_unique_id_is_409(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        await make_device(session, team.org, unique_id="imei-dup")
        response = await client.post(
            "/api/v1/vehicles",
            json={"unique_id": "imei-dup", "name": "Again"},
            headers=bearer(team.owner),
        )
        assert response.status_code == 409
        assert error_code(response) == "conflict"

    async def test_manager_may_not_register(
        self, client: httpx.AsyncClient, team: Team, bearer: Bearer
    ) -> None:
        response = await client.post(
            "/api/v1/vehicles",
            json={"unique_id": "imei-m", "name": "Nope"},
            headers=bearer(team.manager),
        )
        assert response.status_code == 403


class TestUpdateDevice:
    async def test_manager_updates_sent_fields_only(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org, name="Old", plate="P-1")
        response = await client.patch(
            f"/api/v1/vehicles/{device.id}",
            json={"name": "New", "speed_limit_kmh": 80},
            headers=bearer(team.manager),
        )
        assert response.status_code == 200
        body = response.json()
        assert (body["name"], body["plate"], body["speed_limit_kmh"]) == ("New", "P-1", 80.0)

    async def test_offline_status_after_the_window(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org)
        await make_device_state(
            session, device, last_fix_time=datetime.now(UTC) - timedelta(hours=2)
        )
        response = await client.get(f"/api/v1/vehicles/{device.id}", headers=bearer(team.viewer))
        assert response.json()["status"] == "offline"
