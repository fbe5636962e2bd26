from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.db import create_database, unit_of_work
from milepost_common.domain.principals import SYSTEM
from milepost_common.domain.users import service as user_service
from milepost_common.domain.users.errors import LastOwner
from milepost_common.domain.users.models import OrgRole, User
from milepost_common.settings import CommonSettings
from milepost_common.testing.factories import make_organization, make_user
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

    async def test_one_member_over_the_limit_is_a_409_and_a_deactivated_one_frees_room(
        self,
        api_app: FastAPI,
        client: httpx.AsyncClient,
        team: Team,
        other_team: Team,
        bearer: Bearer,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # Each member has the api's rate limit and streams to itself, and the owner holds
        # the invitation link: members without end were requests without end.
        monkeypatch.setattr(api_app.state.ctx.settings.api, "max_users_per_org", 4)
        owner = bearer(team.owner)

        def invite(email: str) -> dict[str, str]:
            return {"email": email, "role": "viewer"}

        invited = await client.post("/api/v1/users", json=invite("a@example.com"), headers=owner)
        over = await client.post("/api/v1/users", json=invite("b@example.com"), headers=owner)
        elsewhere = await client.post(
            "/api/v1/users", json=invite("c@example.com"), headers=bearer(other_team.owner)
        )
        await client.post(f"/api/v1/users/{invited.json()['id']}/deactivate", headers=owner)
        again = await client.post("/api/v1/users", json=invite("b@example.com"), headers=owner)

        assert invited.status_code == 201  # the team's three and this one
        assert over.status_code == 409
        assert over.json()["error"]["message"] == (
            "The organization already has the most active members it may have (4)."
        )
        assert (elsewhere.status_code, again.status_code) == (201, 201)

    async def test_the_last_owner_stays(
        self, client: httpx.AsyncClient, team: Team, bearer: Bearer
    ) -> None:
        response = await client.patch(
            f"/api/v1/users/{team.owner.id}", json={"role": "viewer"}, headers=bearer(team.owner)
        )
        assert response.status_code == 409
        assert error_code(response) == "conflict"

    async def test_an_invitation_not_accepted_makes_no_owner(
        self, client: httpx.AsyncClient, team: Team, bearer: Bearer
    ) -> None:
        # The only owner who can log in invites an owner, then steps down: if the invitation
        # is never accepted, nobody can manage the team, keys or webhooks again.
        headers = bearer(team.owner)
        invited = await client.post(
            "/api/v1/users", json={"email": "ghost@example.com", "role": "owner"}, headers=headers
        )

        stepping_down = await client.patch(
            f"/api/v1/users/{team.owner.id}", json={"role": "viewer"}, headers=headers
        )

        assert invited.status_code == 201
        assert stepping_down.status_code == 409
        assert error_code(stepping_down) == "conflict"


async def test_two_owners_demoting_each_other_at_once_leave_one(
    committed_database: str, settings_factory: Callable[..., Any]
) -> None:
    # Each counted the other as an owner still, and both demotions committed: no owner.
    db = create_database(settings_factory(CommonSettings, db={"url": committed_database}).db)
    try:
        async with unit_of_work(db) as session:
            org = await make_organization(session)
            owners = [await make_user(session, org, role=OrgRole.OWNER) for _ in range(2)]

        async def demote(user_id: uuid.UUID, hold: asyncio.Event | None) -> str:
            async with unit_of_work(db) as session:
                user = await session.get(User, user_id)
                assert user is not None
                try:
                    await user_service.change_user_role(session, SYSTEM, user, OrgRole.VIEWER)
                except LastOwner:
                    return "refused"
                if hold is not None:
                    await hold.wait()  # committed only once the other has counted
            return "demoted"

        release = asyncio.Event()
        first = asyncio.create_task(demote(owners[0].id, release))
        await asyncio.sleep(0.2)
        second = asyncio.create_task(demote(owners[1].id, None))
        await asyncio.sleep(0.2)
        release.set()

        assert sorted(await asyncio.gather(first, second)) == ["demoted", "refused"]
    finally:
        await db.dispose()
