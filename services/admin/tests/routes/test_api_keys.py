"""API keys: issued with the secret once, listed without it, revoked, rotated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from admin_support import Staff, audit_actions
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_admin.settings import AdminSettings
from milepost_common.domain.principals import PrincipalResolver
from milepost_common.errors import Unauthorized
from milepost_common.testing.factories import make_api_key, make_organization


class TestIssueApiKey:
    async def test_secret_only_in_the_201(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        staff: Staff,
        admin_settings: AdminSettings,
    ) -> None:
        org = await make_organization(session)

        response = await client.post(
            f"/admin/v1/organizations/{org.id}/api-keys",
            json={"name": "Gateway", "scopes": ["ingest", "ingest:osmand"]},
            headers=staff.operator_auth,
        )

        assert response.status_code == 201
        body = response.json()
        assert {"id", "prefix", "key"} <= set(body)
        assert body["key"].startswith(body["prefix"])
        assert body["scopes"] == ["ingest", "ingest:osmand"]
        resolver = PrincipalResolver(
            None,
            cache_ttl_s=0,
            api_key_pepper=admin_settings.auth.api_key_pepper.get_secret_value(),
        )
        assert (await resolver.from_api_key(session, body["key"])).org_id == org.id
        listed = await client.get(
            f"/admin/v1/organizations/{org.id}/api-keys", headers=staff.support_auth
        )
        assert listed.status_code == 200
        [item] = listed.json()["items"]
        assert item["prefix"] == body["prefix"]
        assert "key" not in item
        assert body["key"] not in listed.text
        assert "last_used_at" in item

    async def test_unknown_scope_is_422(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)

        response = await client.post(
            f"/admin/v1/organizations/{org.id}/api-keys",
            json={"name": "Gateway", "scopes": ["admin"]},
            headers=staff.operator_auth,
        )

        assert response.status_code == 422

    async def test_an_expiry_without_an_offset_is_422(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        """Timestamps are accepted with an offset only (as the api's own key route does): a
        bare local time would expire the key at a time nobody chose."""
        org = await make_organization(session)

        response = await client.post(
            f"/admin/v1/organizations/{org.id}/api-keys",
            json={"name": "Gateway", "expires_at": "2030-01-01T00:00:00"},
            headers=staff.operator_auth,
        )

        assert response.status_code == 422, response.text
        assert response.json()["error"]["details"][0]["loc"] == ["body", "expires_at"]


class TestRevokeApiKey:
    async def test_idempotent_and_effective_at_once(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        staff: Staff,
        admin_settings: AdminSettings,
    ) -> None:
        issued = await make_api_key(session, await make_organization(session))
        url = f"/admin/v1/api-keys/{issued.api_key.id}/revoke"

        first = await client.post(url, headers=staff.operator_auth)
        second = await client.post(url, headers=staff.operator_auth)

        assert first.status_code == second.status_code == 200
        assert first.json()["revoked_at"] == second.json()["revoked_at"] is not None
        assert await audit_actions(session, action="api_keys.revoke") == ["api_keys.revoke"]
        session.expire_all()
        resolver = PrincipalResolver(None, cache_ttl_s=0)
        with pytest.raises(Unauthorized):
            await resolver.from_api_key(session, issued.secret)


class TestRotateApiKey:
    async def test_new_secret_and_old_key_revoked(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        staff: Staff,
        admin_settings: AdminSettings,
    ) -> None:
        issued = await make_api_key(session, await make_organization(session), name="Gateway")

        response = await client.post(
            f"/admin/v1/api-keys/{issued.api_key.id}/rotate", headers=staff.operator_auth
        )

        assert response.status_code == 201
        body = response.json()
        assert body["name"] == "Gateway"
        assert body["id"] != str(issued.api_key.id)
        session.expire_all()
        resolver = PrincipalResolver(None, cache_ttl_s=0)
        assert (await resolver.from_api_key(session, body["key"])).id is not None
        with pytest.raises(Unauthorized):
            await resolver.from_api_key(session, issued.secret)
        again = await client.post(
            f"/admin/v1/api-keys/{issued.api_key.id}/rotate", headers=staff.operator_auth
        )
        assert again.status_code == 409

    async def test_an_expired_key_is_refused_rather_than_renewed_already_expired(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        """The rotated key inherits the expiry: from an expired key it would be a secret that
        never works, shown once, while the old key is revoked. Refused like a revoked one."""
        org = await make_organization(session)
        expired = await make_api_key(
            session, org, name="Gateway", expires_at=datetime.now(UTC) - timedelta(days=1)
        )

        response = await client.post(
            f"/admin/v1/api-keys/{expired.api_key.id}/rotate", headers=staff.operator_auth
        )

        assert response.status_code == 409, response.text
        assert "expired" in response.json()["error"]["message"]
        listed = await client.get(
            f"/admin/v1/organizations/{org.id}/api-keys", headers=staff.support_auth
        )
        assert [(k["id"], k["revoked_at"]) for k in listed.json()["items"]] == [
            (str(expired.api_key.id), None)
        ]
