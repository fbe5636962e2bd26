"""Operator login and the realms: only admin tokens of active operators get in."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable

import httpx
import jwt
import pytest
from admin_support import Staff, audit_entries, bearer
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_admin.main import create_app
from milepost_admin.settings import AdminSettings
from milepost_common.auth import Realm, TokenCodec
from milepost_common.testing.factories import (
    DEFAULT_PASSWORD,
    make_api_key,
    make_operator,
    make_organization,
    make_user,
)
from milepost_common.testing.passwords import count_argon2_verifications
from milepost_common.testing.plugin import TEST_ADMIN_JWT_KEYS, TEST_JWT_KEYS, app_client


async def _login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/admin/v1/auth/token", data={"username": email, "password": password})


class TestIssueToken:
    async def test_operator_gets_an_admin_token(
        self, client: httpx.AsyncClient, session: AsyncSession, admin_settings: AdminSettings
    ) -> None:
        operator = await make_operator(session)

        response = await _login(client, operator.email.upper(), DEFAULT_PASSWORD)

        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"access_token", "token_type", "expires_in"}
        assert body["token_type"] == "bearer"
        codec = TokenCodec(admin_settings.auth, Realm.ADMIN)
        claims = codec.verify(body["access_token"], Realm.ADMIN)
        assert claims.subject == operator.id
        [entry] = await audit_entries(session, "auth.login")
        assert entry.actor_id == operator.id

    async def test_wrong_password_is_refused_and_audited(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        operator = await make_operator(session)

        response = await _login(client, operator.email, "not the password at all")

        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_credentials"
        [entry] = await audit_entries(session, "auth.login_failed")
        assert entry.actor_label == operator.email

    async def test_a_username_longer_than_any_email_is_refused_and_audited(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        response = await _login(client, "x" * 400 + "@example.com", "not the password at all")

        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_credentials"
        [entry] = await audit_entries(session, "auth.login_failed")
        assert entry.actor_label == "x" * 319 + "…"

    async def test_organization_user_cannot_log_in(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)

        response = await _login(client, user.email, DEFAULT_PASSWORD)

        assert response.status_code == 401

    async def test_repeated_failures_are_throttled(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        operator = await make_operator(session)
        for _ in range(3):
            assert (await _login(client, operator.email, "wrong password 123")).status_code == 401

        response = await _login(client, operator.email, DEFAULT_PASSWORD)

        assert response.status_code == 429
        assert response.json()["error"]["code"] == "rate_limited"
        assert "Retry-After" in response.headers


class TestLoginThrottle:
    async def test_concurrent_wrong_passwords_are_counted_before_the_password_check(
        self,
        settings_factory: Callable[..., AdminSettings],
        committed_database: str,
        redis: Redis,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        settings = settings_factory(
            AdminSettings, db={"url": committed_database}, auth={"login_attempts_per_minute": 3}
        )
        app = create_app(settings)
        async with app_client(app) as client:
            async with app.state.db.sessionmaker() as session:
                operator = await make_operator(session)
                await session.commit()
            verified = count_argon2_verifications(monkeypatch)

            responses = await asyncio.gather(
                *(_login(client, operator.email, f"wrong password {n}") for n in range(40))
            )

        assert Counter(response.status_code for response in responses) == {401: 3, 429: 37}
        assert len(verified) == 3

    async def test_spaces_and_case_share_the_bucket_of_the_email(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        operator = await make_operator(session)
        for _ in range(3):
            assert (await _login(client, operator.email, "wrong password 123")).status_code == 401

        response = await _login(client, f" {operator.email.upper()}  ", DEFAULT_PASSWORD)

        assert response.status_code == 429


class TestRealms:
    async def test_a_token_signed_with_an_api_key_is_refused_even_with_aud_admin(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        [(admin_kid, admin_key)] = TEST_ADMIN_JWT_KEYS.items()
        [(api_kid, api_key)] = TEST_JWT_KEYS.items()
        now = int(time.time())
        claims = {"sub": str(staff.superadmin.id), "aud": "admin", "iss": "milepost"}
        claims |= {"iat": now, "exp": now + 600, "jti": uuid.uuid4().hex}

        def signed(key: str, kid: str) -> dict[str, str]:
            token = jwt.encode(claims, key, "HS256", headers={"kid": kid})
            return {"Authorization": f"Bearer {token}"}

        with_api_kid = await client.get("/admin/v1/organizations", headers=signed(api_key, api_kid))
        with_admin_kid = await client.get(
            "/admin/v1/organizations", headers=signed(api_key, admin_kid)
        )
        control = await client.get("/admin/v1/organizations", headers=signed(admin_key, admin_kid))

        assert (with_api_kid.status_code, with_admin_kid.status_code) == (401, 401)
        assert control.status_code == 200

    async def test_without_a_token_is_401(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/admin/v1/organizations")

        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"

    async def test_public_api_token_is_refused(
        self, client: httpx.AsyncClient, session: AsyncSession, admin_settings: AdminSettings
    ) -> None:
        owner = await make_user(session)

        response = await client.get(
            "/admin/v1/organizations", headers=bearer(admin_settings, owner, Realm.API)
        )

        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"

    async def test_operator_token_of_the_api_realm_is_refused(
        self, client: httpx.AsyncClient, staff: Staff, admin_settings: AdminSettings
    ) -> None:
        headers = bearer(admin_settings, staff.superadmin, Realm.API)

        response = await client.get("/admin/v1/organizations", headers=headers)

        assert response.status_code == 401

    async def test_api_key_is_refused(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        issued = await make_api_key(session, await make_organization(session))

        for headers in ({"Authorization": f"Bearer {issued.secret}"}, {"X-API-Key": issued.secret}):
            response = await client.get("/admin/v1/organizations", headers=headers)
            assert response.status_code == 401

    async def test_deactivated_operator_is_refused_at_the_next_request(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        assert (
            await client.get("/admin/v1/organizations", headers=staff.operator_auth)
        ).status_code == 200
        deactivate = await client.post(
            f"/admin/v1/operators/{staff.operator.id}/deactivate", headers=staff.superadmin_auth
        )
        assert deactivate.status_code == 200

        response = await client.get("/admin/v1/organizations", headers=staff.operator_auth)

        assert response.status_code == 401

    async def test_a_token_issued_before_a_reactivation_stays_refused(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        # Deactivating an operator whose token was stolen, then reactivating them, must not
        # give the token back its remaining minutes.
        [(kid, key)] = TEST_ADMIN_JWT_KEYS.items()
        issued = int(time.time()) - 60
        claims = {"sub": str(staff.operator.id), "aud": "admin", "iss": "milepost", "iat": issued}
        claims |= {"exp": issued + 900, "jti": uuid.uuid4().hex}
        stolen = {"Authorization": f"Bearer {jwt.encode(claims, key, 'HS256', {'kid': kid})}"}
        assert (await client.get("/admin/v1/organizations", headers=stolen)).status_code == 200
        for step in ("deactivate", "reactivate"):
            changed = await client.post(
                f"/admin/v1/operators/{staff.operator.id}/{step}", headers=staff.superadmin_auth
            )
            assert changed.status_code == 200

        response = await client.get("/admin/v1/organizations", headers=stolen)
        fresh = await _login(client, staff.operator.email, DEFAULT_PASSWORD)

        assert response.status_code == 401
        fresh_headers = {"Authorization": f"Bearer {fresh.json()['access_token']}"}
        assert (
            await client.get("/admin/v1/organizations", headers=fresh_headers)
        ).status_code == 200
