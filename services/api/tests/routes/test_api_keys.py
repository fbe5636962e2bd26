from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from milepost_common.domain.api_keys.models import ApiKey
from services.api.tests.api_support import Bearer, Team, actions

KEYS = "/api/v1/api-keys"


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

    async def test_a_scope_given_twice_is_kept_once(
        self, client: httpx.AsyncClient, team: Team, bearer: Bearer
    ) -> None:
        headers = bearer(team.owner)
        issued = await client.post(
            KEYS,
            json={"name": "gw", "scopes": ["ingest:osmand", "ingest", "ingest:osmand"]},
            headers=headers,
        )
        listed = await client.get(KEYS, headers=headers)

        assert issued.status_code == 201, issued.text
        assert issued.json()["scopes"] == ["ingest:osmand", "ingest"]
        assert listed.json()["items"][0]["scopes"] == ["ingest:osmand", "ingest"]


class TestLimit:
    async def test_one_key_over_the_limit_is_a_409_and_a_revoked_one_frees_room(
        self,
        api_app: FastAPI,
        client: httpx.AsyncClient,
        team: Team,
        other_team: Team,
        bearer: Bearer,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # Each key has the ingest rate limit to itself: keys without end were pushes without end.
        monkeypatch.setattr(api_app.state.ctx.settings.api, "max_api_keys_per_org", 2)
        owner = bearer(team.owner)

        issued = [
            await client.post(KEYS, json={"name": f"gw-{i}"}, headers=owner) for i in range(2)
        ]
        over = await client.post(KEYS, json={"name": "gw-2"}, headers=owner)
        elsewhere = await client.post(KEYS, json={"name": "gw"}, headers=bearer(other_team.owner))
        await client.post(f"{KEYS}/{issued[0].json()['id']}/revoke", headers=owner)
        again = await client.post(KEYS, json={"name": "gw-3"}, headers=owner)

        assert [i.status_code for i in issued] == [201, 201]
        assert over.status_code == 409
        assert over.json()["error"]["code"] == "conflict"
        assert over.json()["error"]["message"] == (
            "The organization already has the most API keys in use it may have (2)."
        )
        assert (elsewhere.status_code, again.status_code) == (201, 201)
