from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from redis.asyncio import Redis
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_api.main import create_app
from milepost_api.settings import ApiSettings
from milepost_common.auth import Realm
from milepost_common.domain.audit.models import AuditEntry
from milepost_common.domain.sessions import service as sessions
from milepost_common.domain.sessions.models import OneTimeToken, TokenPurpose
from milepost_common.domain.users.models import User
from milepost_common.testing.factories import DEFAULT_PASSWORD, make_user
from milepost_common.testing.passwords import count_argon2_verifications
from milepost_common.testing.plugin import TEST_ADMIN_JWT_KEYS, TEST_JWT_KEYS, app_client
from services.api.tests.api_support import Bearer, Team, error_code

NEW_PASSWORD = "a brand new passphrase"


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/api/v1/auth/token", data={"username": email, "password": password})


async def actions(session: AsyncSession, action: str) -> list[AuditEntry]:
    query = select(AuditEntry).where(AuditEntry.action == action)
    return list((await session.scalars(query)).all())


class TestCreateToken:
    async def test_password_login_returns_a_pair(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        response = await login(client, team.viewer.email.upper(), DEFAULT_PASSWORD)

        assert response.status_code == 200
        body = response.json()
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == 900
        assert body["refresh_token"].startswith("mprt_")
        assert response.headers["Cache-Control"] == "no-store"
        me = await client.get(
            "/api/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"}
        )
        assert me.json()["email"] == team.viewer.email

    async def test_wrong_password_is_401_and_audited(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        response = await login(client, team.viewer.email, "wrong password!")

        assert response.status_code == 401
        assert error_code(response) == "invalid_credentials"
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert len(await actions(session, "auth.login_failed")) == 1

    async def test_a_username_longer_than_any_email_is_401_and_audited(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        response = await login(client, "x" * 400 + "@example.com", "any password at all")

        assert response.status_code == 401
        assert error_code(response) == "invalid_credentials"
        [entry] = await actions(session, "auth.login_failed")
        assert entry.actor_label is not None
        assert entry.actor_label.startswith("x" * 300)

    async def test_throttled_after_repeated_failures_without_revealing_the_email(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        # login_attempts_per_minute is 5 in the test settings.
        for _ in range(5):
            assert (await login(client, team.viewer.email, "nope nope")).status_code == 401
            assert (await login(client, "ghost@example.com", "nope nope")).status_code == 401

        existing = await login(client, team.viewer.email, DEFAULT_PASSWORD)
        unknown = await login(client, "ghost@example.com", DEFAULT_PASSWORD)

        assert existing.status_code == unknown.status_code == 429
        assert existing.json()["error"]["message"] == unknown.json()["error"]["message"]
        assert error_code(existing) == "rate_limited"
        assert int(existing.headers["Retry-After"]) > 0

    async def test_deactivated_user_cannot_log_in(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        team.viewer.is_active = False
        session.add(team.viewer)
        await session.flush()
        assert (await login(client, team.viewer.email, DEFAULT_PASSWORD)).status_code == 401


class TestLoginThrottle:
    async def test_concurrent_wrong_passwords_are_counted_before_the_password_check(
        self,
        settings_factory: Callable[..., ApiSettings],
        committed_database: str,
        redis: Redis,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # The app's own pool on a committed database: 100 requests at once need connections.
        settings = settings_factory(
            ApiSettings, db={"url": committed_database}, auth={"login_attempts_per_minute": 5}
        )
        app = create_app(settings)
        async with app_client(app) as client:
            async with app.state.db.sessionmaker() as session:
                user = await make_user(session)
                await session.commit()
            verified = count_argon2_verifications(monkeypatch)

            responses = await asyncio.gather(
                *(login(client, user.email, f"wrong password {n}") for n in range(100))
            )

        assert Counter(response.status_code for response in responses) == {401: 5, 429: 95}
        assert len(verified) == 5

    async def test_spaces_and_case_share_the_bucket_of_the_email(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        for _ in range(5):
            assert (await login(client, team.owner.email, "nope nope")).status_code == 401

        response = await login(client, f"  {team.owner.email.upper()} ", DEFAULT_PASSWORD)

        assert response.status_code == 429

    async def test_successful_logins_are_not_counted(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        for _ in range(6):
            assert (await login(client, team.owner.email, DEFAULT_PASSWORD)).status_code == 200

        assert (await login(client, team.owner.email, "nope nope")).status_code == 401


class TestRefreshToken:
    async def test_rotation_and_reuse_revokes_the_family(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        first = (await login(client, team.owner.email, DEFAULT_PASSWORD)).json()
        rotated = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
        )
        assert rotated.status_code == 200
        second = rotated.json()
        assert second["refresh_token"] != first["refresh_token"]

        reused = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
        )
        after_reuse = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
        )

        assert reused.status_code == 401
        assert error_code(reused) == "unauthorized"
        assert after_reuse.status_code == 401  # the family died with the reuse
        assert len(await actions(session, "auth.refresh_reuse")) == 1

    async def test_logout_revokes(self, client: httpx.AsyncClient, team: Team) -> None:
        pair = (await login(client, team.owner.email, DEFAULT_PASSWORD)).json()
        out = await client.post(
            "/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]}
        )
        again = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
        )
        assert out.status_code == 204
        assert again.status_code == 401


class TestOneTimeLinks:
    async def test_invitation_is_single_use(
        self, client: httpx.AsyncClient, team: Team, bearer: Bearer
    ) -> None:
        invited = await client.post(
            "/api/v1/users",
            json={"email": "new.member@example.com", "role": "viewer"},
            headers=bearer(team.owner),
        )
        assert invited.status_code == 201
        token = invited.json()["invite_url"].split("#token=", 1)[1]

        accepted = await client.post(
            "/api/v1/auth/invitations/accept", json={"token": token, "password": NEW_PASSWORD}
        )
        replayed = await client.post(
            "/api/v1/auth/invitations/accept", json={"token": token, "password": NEW_PASSWORD}
        )

        assert accepted.status_code == 204
        assert replayed.status_code == 400
        assert (await login(client, "new.member@example.com", NEW_PASSWORD)).status_code == 200

    async def test_expired_reset_link_is_refused(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        link = await client.post(
            f"/api/v1/users/{team.viewer.id}/password-reset", headers=bearer(team.owner)
        )
        token = link.json()["reset_url"].split("#token=", 1)[1]
        await session.execute(
            update(OneTimeToken)
            .where(col(OneTimeToken.user_id) == team.viewer.id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )

        response = await client.post(
            "/api/v1/auth/password-reset", json={"token": token, "password": NEW_PASSWORD}
        )

        assert response.status_code == 400
        assert (await login(client, team.viewer.email, DEFAULT_PASSWORD)).status_code == 200

    async def test_reset_sets_the_password_once_and_revokes_sessions(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        pair = (await login(client, team.viewer.email, DEFAULT_PASSWORD)).json()
        token = await sessions.issue_one_time_token(
            session, team.viewer, TokenPurpose.PASSWORD_RESET
        )

        first = await client.post(
            "/api/v1/auth/password-reset", json={"token": token, "password": NEW_PASSWORD}
        )
        second = await client.post(
            "/api/v1/auth/password-reset", json={"token": token, "password": "another one again"}
        )
        refreshed = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
        )

        assert (first.status_code, second.status_code) == (204, 400)
        assert refreshed.status_code == 401
        assert (await login(client, team.viewer.email, NEW_PASSWORD)).status_code == 200


class TestMe:
    async def test_get_and_patch(
        self, client: httpx.AsyncClient, team: Team, bearer: Bearer
    ) -> None:
        patched = await client.patch(
            "/api/v1/me", json={"name": "Dana Dispatcher"}, headers=bearer(team.viewer)
        )
        me = await client.get("/api/v1/me", headers=bearer(team.viewer))
        assert patched.status_code == 200
        assert me.json()["name"] == "Dana Dispatcher"
        assert me.json()["role"] == "viewer"

    async def test_password_change_revokes_other_sessions(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        other_device = (await login(client, team.viewer.email, DEFAULT_PASSWORD)).json()

        wrong = await client.post(
            "/api/v1/me/password",
            json={"current_password": "not it at all", "new_password": NEW_PASSWORD},
            headers=bearer(team.viewer),
        )
        changed = await client.post(
            "/api/v1/me/password",
            json={"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD},
            headers=bearer(team.viewer),
        )
        stale = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": other_device["refresh_token"]}
        )
        fresh = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": changed.json()["refresh_token"]}
        )

        assert wrong.status_code == 401
        assert changed.status_code == 200
        assert stale.status_code == 401
        assert fresh.status_code == 200
        assert len(await actions(session, "users.change_password")) == 1

    async def test_password_change_kills_an_unused_reset_link(
        self, client: httpx.AsyncClient, team: Team, bearer: Bearer
    ) -> None:
        # The owner sent a reset link; the member, who remembered the password, changed it.
        link = await client.post(
            f"/api/v1/users/{team.viewer.id}/password-reset", headers=bearer(team.owner)
        )
        token = link.json()["reset_url"].split("#token=", 1)[1]
        changed = await client.post(
            "/api/v1/me/password",
            json={"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD},
            headers=bearer(team.viewer),
        )

        late = await client.post(
            "/api/v1/auth/password-reset", json={"token": token, "password": "another one again"}
        )

        assert changed.status_code == 200
        assert late.status_code == 400
        assert (await login(client, team.viewer.email, NEW_PASSWORD)).status_code == 200


class TestAccessTokens:
    @pytest.mark.parametrize("problem", ["expired", "admin_realm", "tampered", "garbage"])
    async def test_bad_tokens_are_401(
        self, client: httpx.AsyncClient, team: Team, bearer: Bearer, problem: str
    ) -> None:
        headers = {
            "expired": bearer(team.owner, ttl_s=-10),
            "admin_realm": bearer(team.owner, realm=Realm.ADMIN),
            "tampered": {"Authorization": bearer(team.owner)["Authorization"][:-3] + "abc"},
            "garbage": {"Authorization": "Bearer not-a-jwt"},
        }[problem]
        response = await client.get("/api/v1/vehicles", headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"

    async def test_a_token_issued_before_a_password_change_is_refused(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        # A stolen access token outlived the password's change by up to 15 minutes.
        [(kid, key)] = TEST_JWT_KEYS.items()
        issued = int(time.time()) - 60
        claims = {"sub": str(team.viewer.id), "aud": "api", "iss": "milepost", "iat": issued}
        claims |= {"exp": issued + 900, "jti": uuid.uuid4().hex}
        earlier = {"Authorization": f"Bearer {jwt.encode(claims, key, 'HS256', {'kid': kid})}"}

        changed = await client.post(
            "/api/v1/me/password",
            json={"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD},
            headers=earlier,
        )
        fresh = {"Authorization": f"Bearer {changed.json()['access_token']}"}

        assert changed.status_code == 200
        assert (await client.get("/api/v1/me", headers=earlier)).status_code == 401
        assert (await client.get("/api/v1/me", headers=fresh)).status_code == 200

    async def test_deactivation_and_suspension_apply_on_the_next_request(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        owner_headers = bearer(team.owner)
        viewer_headers = bearer(team.viewer)
        assert (await client.get("/api/v1/vehicles", headers=viewer_headers)).status_code == 200

        deactivated = await client.post(
            f"/api/v1/users/{team.viewer.id}/deactivate", headers=owner_headers
        )
        assert deactivated.status_code == 200
        assert (await client.get("/api/v1/vehicles", headers=viewer_headers)).status_code == 401

        team.org.suspended_at = datetime.now(UTC)
        session.add(team.org)
        await session.flush()
        assert (await client.get("/api/v1/vehicles", headers=owner_headers)).status_code == 401

    async def test_a_token_signed_with_an_admin_key_is_refused_even_with_aud_api(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        [(admin_kid, admin_key)] = TEST_ADMIN_JWT_KEYS.items()
        [(api_kid, api_key)] = TEST_JWT_KEYS.items()
        now = int(time.time())
        claims = {"sub": str(team.owner.id), "aud": "api", "iss": "milepost", "iat": now}
        claims |= {"exp": now + 600, "jti": uuid.uuid4().hex}

        def signed(key: str, kid: str) -> dict[str, str]:
            token = jwt.encode(claims, key, "HS256", headers={"kid": kid})
            return {"Authorization": f"Bearer {token}"}

        with_admin_kid = await client.get("/api/v1/me", headers=signed(admin_key, admin_kid))
        with_api_kid = await client.get("/api/v1/me", headers=signed(admin_key, api_kid))
        control = await client.get("/api/v1/me", headers=signed(api_key, api_kid))

        assert (with_admin_kid.status_code, with_api_kid.status_code) == (401, 401)
        assert control.status_code == 200

    async def test_operator_token_is_refused(
        self, client: httpx.AsyncClient, session: AsyncSession, bearer: Bearer
    ) -> None:
        user = await make_user(session)
        user_row = await session.get(User, user.id)
        assert user_row is not None
        response = await client.get("/api/v1/me", headers=bearer(user, realm=Realm.ADMIN))
        assert response.status_code == 401


class TestPerUserRateLimit:
    async def test_over_the_limit_is_429_per_user(
        self, client: httpx.AsyncClient, api_app: Any, team: Team, bearer: Bearer
    ) -> None:
        settings = api_app.state.ctx.settings.api
        original = settings.rate_limit
        settings.rate_limit = "3/minute"
        try:
            viewer = [
                (await client.get("/api/v1/vehicles", headers=bearer(team.viewer))).status_code
                for _ in range(4)
            ]
            owner = await client.get("/api/v1/vehicles", headers=bearer(team.owner))
        finally:
            settings.rate_limit = original
        assert viewer == [200, 200, 200, 429]
        assert owner.status_code == 200

    async def test_an_organizations_own_limit_replaces_the_default(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        other_team: Team,
        bearer: Bearer,
    ) -> None:
        team.org.api_rate_limit = "2/minute"  # its plan
        await session.flush()
        limited = [
            (await client.get("/api/v1/vehicles", headers=bearer(team.viewer))).status_code
            for _ in range(3)
        ]
        others = [
            (await client.get("/api/v1/vehicles", headers=bearer(other_team.viewer))).status_code
            for _ in range(3)
        ]
        assert limited == [200, 200, 429]
        assert others == [200, 200, 200]
