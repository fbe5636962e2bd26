from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.tests.api_support import Bearer, Team, actions, error_code


class TestTeam:
    async def test_invite_change_role_deactivate(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        headers = bearer(team.owner)
        invited = await client.post(
            "/api/v1/users", json={"email": "Ops@Example.com", "role": "viewer"}, headers=headers
        )
        member_id = invited.json()["id"]
        promoted = await client.patch(
            f"/api/v1/users/{member_id}", json={"role": "manager"}, headers=headers
        )
        deactivated = await client.post(f"/api/v1/users/{member_id}/deactivate", headers=headers)
        listed = await client.get("/api/v1/users", params={"is_active": "false"}, headers=headers)

        assert invited.status_code == 201
        assert invited.json()["email"] == "ops@example.com"
        assert invited.json()["invite_url"].startswith(
            "http://127.0.0.1:8080/api/account/invitation#token="
        )
        assert promoted.json()["role"] == "manager"
        assert deactivated.json()["is_active"] is False
        assert [u["id"] for u in listed.json()["items"]] == [member_id]
        assert {"users.create", "users.change_role", "users.deactivate"} <= await actions(session)

    async def test_duplicate_email_is_409(
        self, client: httpx.AsyncClient, team: Team, bearer: Bearer
    ) -> None:
        response = await client.post(
            "/api/v1/users",
            json={"email": team.viewer.email, "role": "viewer"},
            headers=bearer(team.owner),
        )
        assert response.status_code == 409

    async def test_the_last_owner_stays(
        self, client: httpx.AsyncClient, team: Team, bearer: Bearer
    ) -> None:
        response = await client.patch(
            f"/api/v1/users/{team.owner.id}", json={"role": "viewer"}, headers=bearer(team.owner)
        )
        assert response.status_code == 409
        assert error_code(response) == "conflict"
