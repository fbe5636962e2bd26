from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from milepost_common.domain.api_keys.models import ApiKey
from services.api.tests.api_support import Bearer, Team, actions


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

    async def test_the_list_takes_limit_and_cursor_as_every_list_does(
        self, client: httpx.AsyncClient, team: Team, bearer: Bearer
    ) -> None:
        headers = bearer(team.owner)
        for name in ("one", "two", "three"):
            await client.post("/api/v1/api-keys", json={"name": name}, headers=headers)

        first = await client.get("/api/v1/api-keys", params={"limit": 2}, headers=headers)
        rest = await client.get(
            "/api/v1/api-keys",
            params={"limit": 2, "cursor": first.json()["next_cursor"]},
            headers=headers,
        )
        too_many = await client.get("/api/v1/api-keys", params={"limit": 5000}, headers=headers)

        names = [k["name"] for k in first.json()["items"] + rest.json()["items"]]
        assert names == ["one", "two", "three"]
        assert rest.json()["next_cursor"] is None
        assert too_many.status_code == 422
