from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from milepost_common.domain.api_keys.models import ApiKey
from milepost_common.domain.audit.models import AuditEntry
from services.api.tests.api_support import Bearer, Team, error_code


async def actions(session: AsyncSession) -> set[str]:
    return set((await session.scalars(select(AuditEntry.action))).all())


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


class TestApiKeys:
    async def test_issue_list_revoke_with_the_secret_once(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        headers = bearer(team.owner)
        issued = await client.post("/api/v1/api-keys", json={"name": "Gateway"}, headers=headers)
        key = issued.json()["key"]
        key_id = issued.json()["id"]
        listed = await client.get("/api/v1/api-keys", headers=headers)
        revoked = await client.post(f"/api/v1/api-keys/{key_id}/revoke", headers=headers)
        again = await client.post(f"/api/v1/api-keys/{key_id}/revoke", headers=headers)

        assert issued.status_code == 201
        assert key.startswith(issued.json()["prefix"])
        assert issued.json()["scopes"] == ["ingest"]
        assert key not in listed.text
        assert [k["id"] for k in listed.json()["items"]] == [key_id]
        assert revoked.json()["revoked_at"] is not None
        assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
        stored = (await session.scalars(select(ApiKey.key_hash))).all()
        assert key not in stored
        assert {"api_keys.issue", "api_keys.revoke"} <= await actions(session)
