"""Users of organizations: create (password or invitation), role, deactivate, reset."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from admin_support import Staff, audit_entries
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_admin.settings import AdminHttp, AdminSettings
from milepost_common.auth import PasswordHasher, Realm
from milepost_common.domain.sessions import service as sessions
from milepost_common.domain.sessions.models import RefreshToken, TokenPurpose
from milepost_common.domain.users.models import OrgRole, User
from milepost_common.testing.factories import make_organization, make_user
from milepost_common.testing.plugin import token_codec


class TestCreateUser:
    async def test_with_a_password(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)

        response = await client.post(
            f"/admin/v1/organizations/{org.id}/users",
            json={
                "email": "Dana@Example.com",
                "password": "a long enough password",
                "role": "manager",
            },
            headers=staff.operator_auth,
        )

        assert response.status_code == 201
        body = response.json()
        assert body["email"] == "dana@example.com"
        assert body["role"] == "manager"
        assert body["org_id"] == str(org.id)
        assert body["invite_url"] is None
        [entry] = await audit_entries(session, "users.create")
        assert "password" not in str(entry.diff)

    async def test_without_a_password_gets_a_working_invitation(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        staff: Staff,
        admin_settings: AdminSettings,
    ) -> None:
        org = await make_organization(session)

        response = await client.post(
            f"/admin/v1/organizations/{org.id}/users",
            json={"email": "invitee@example.com", "role": "viewer"},
            headers=staff.operator_auth,
        )

        assert response.status_code == 201
        url = urlparse(response.json()["invite_url"])
        assert url.geturl().startswith("https://fleet.example/")
        assert url.query == ""  # the token is in the fragment only, which browsers never send
        token = parse_qs(url.fragment)["token"][0]
        user = await sessions.redeem_one_time_token(
            session,
            PasswordHasher(admin_settings.auth),
            token,
            TokenPurpose.INVITATION,
            "my new long password",
        )
        assert user.email == "invitee@example.com"

    async def test_duplicate_email_is_409(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        existing = await make_user(session)
        org = await make_organization(session)

        response = await client.post(
            f"/admin/v1/organizations/{org.id}/users",
            json={"email": existing.email.upper(), "role": "viewer"},
            headers=staff.operator_auth,
        )

        assert response.status_code == 409
        assert response.json()["error"]["code"] == "conflict"

    async def test_unknown_organization_is_404(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        response = await client.post(
            f"/admin/v1/organizations/{uuid.uuid4()}/users",
            json={"email": "x@example.com", "role": "viewer"},
            headers=staff.operator_auth,
        )

        assert response.status_code == 404


class TestChangeUserRole:
    async def test_role_changes_with_a_diff(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        await make_user(session, org, role=OrgRole.OWNER)
        viewer = await make_user(session, org, role=OrgRole.VIEWER)

        response = await client.patch(
            f"/admin/v1/users/{viewer.id}", json={"role": "manager"}, headers=staff.operator_auth
        )

        assert response.status_code == 200
        assert response.json()["role"] == "manager"
        [entry] = await audit_entries(session, "users.change_role")
        assert entry.diff == {"role": ["viewer", "manager"]}

    async def test_last_owner_keeps_the_role(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        owner = await make_user(session, role=OrgRole.OWNER)

        response = await client.patch(
            f"/admin/v1/users/{owner.id}", json={"role": "viewer"}, headers=staff.operator_auth
        )

        assert response.status_code == 409


class TestDeactivateUser:
    async def test_revokes_sessions_and_is_idempotent(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        staff: Staff,
        admin_settings: AdminSettings,
    ) -> None:
        org = await make_organization(session)
        await make_user(session, org, role=OrgRole.OWNER)
        manager = await make_user(session, org, role=OrgRole.MANAGER)
        await sessions.issue_token_pair(
            session, token_codec(), admin_settings.auth, manager, Realm.API
        )
        url = f"/admin/v1/users/{manager.id}/deactivate"

        first = await client.post(url, headers=staff.operator_auth)
        second = await client.post(url, headers=staff.operator_auth)

        assert first.status_code == second.status_code == 200
        assert second.json()["is_active"] is False
        revoked = await session.scalar(
            select(col(RefreshToken.revoked_at)).where(col(RefreshToken.user_id) == manager.id)
        )
        assert revoked is not None
        assert len(await audit_entries(session, "users.deactivate")) == 1

    async def test_reactivate(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        user = await make_user(session, role=OrgRole.VIEWER, is_active=False)

        response = await client.post(
            f"/admin/v1/users/{user.id}/reactivate", headers=staff.operator_auth
        )

        assert response.status_code == 200
        assert response.json()["is_active"] is True


class TestResetUserPassword:
    async def test_returns_a_one_time_link(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        user = await make_user(session)

        response = await client.post(
            f"/admin/v1/users/{user.id}/reset-password", headers=staff.operator_auth
        )

        assert response.status_code == 200
        url = urlparse(response.json()["reset_url"])
        assert url.query == ""
        assert url.fragment.startswith("token=mpot_")
        [entry] = await audit_entries(session, "users.reset_password")
        assert "mpot_" not in str(entry.diff)

    async def test_operator_is_not_a_user(self, client: httpx.AsyncClient, staff: Staff) -> None:
        response = await client.get(
            f"/admin/v1/users/{staff.support.id}", headers=staff.support_auth
        )

        assert response.status_code == 404


class TestListUsers:
    async def test_filters_by_organization(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        users = [await make_user(session, org) for _ in range(2)]
        await make_user(session)

        response = await client.get(
            f"/admin/v1/organizations/{org.id}/users", headers=staff.support_auth
        )

        assert response.status_code == 200
        assert [u["id"] for u in response.json()["items"]] == [str(u.id) for u in users]
        assert isinstance(users[0], User)


class TestLinkSettings:
    @pytest.mark.parametrize("path", ["/invitations/accept?token=", "/accept#token=", "accept"])
    def test_a_link_path_with_a_query_or_fragment_is_refused(self, path: str) -> None:
        with pytest.raises(ValidationError, match="invite_path"):
            AdminHttp(invite_path=path)
