"""Secrets in admin's JSON API: a password an operator sends comes back in no answer and no
log line; an answer that carries a secret (a token, a key, a one-time link) is never stored
by a cache, so nothing can show it a second time."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from admin_support import Staff
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.testing.factories import DEFAULT_PASSWORD, make_organization

SECRET = "Sekr3t-never-shown-0001"


@pytest.fixture
def logged(
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    """Everything the app logged since the test began (records and access-log lines)."""
    monkeypatch.setattr(logging.getLogger("httpx"), "disabled", True)
    caplog.set_level(logging.DEBUG)
    capsys.readouterr()
    return lambda: caplog.text + capsys.readouterr().out


class TestPasswordsNotEchoed:
    async def test_refused_logins_and_users_echo_no_password(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff, logged: Any
    ) -> None:
        org = await make_organization(session)
        answers = [
            await client.post(
                "/admin/v1/auth/token", data={"username": staff.operator.email, "password": SECRET}
            ),
            await client.post("/admin/v1/auth/token", data={"password": SECRET}),
            await client.post(
                f"/admin/v1/organizations/{org.id}/users",
                json={"email": "not-an-email", "password": SECRET, "role": "viewer"},
                headers=staff.operator_auth,
            ),
            await client.post(
                f"/admin/v1/organizations/{org.id}/users",
                json={"email": "a@example.com", "password": SECRET * 9, "role": "viewer"},
                headers=staff.operator_auth,
            ),
            await client.post(
                "/admin/v1/operators",
                json={"email": "op@example.com", "password": SECRET * 9, "role": "support"},
                headers=staff.superadmin_auth,
            ),
        ]
        assert [a.status_code for a in answers] == [401, 422, 422, 422, 422]
        for answer in answers:
            assert SECRET not in answer.text
        assert SECRET not in logged()


class TestSecretAnswersNotCached:
    async def test_every_answer_with_a_secret_is_no_store(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        token = await client.post(
            "/admin/v1/auth/token",
            data={"username": staff.operator.email, "password": DEFAULT_PASSWORD},
        )
        key = await client.post(
            f"/admin/v1/organizations/{org.id}/api-keys",
            json={"name": "Gateway"},
            headers=staff.operator_auth,
        )
        rotated = await client.post(
            f"/admin/v1/api-keys/{key.json()['id']}/rotate", headers=staff.operator_auth
        )
        invited = await client.post(
            f"/admin/v1/organizations/{org.id}/users",
            json={"email": "new@example.com", "role": "viewer"},
            headers=staff.operator_auth,
        )
        reset = await client.post(
            f"/admin/v1/users/{invited.json()['id']}/reset-password",
            headers=staff.operator_auth,
        )
        answers = {
            "token": token,
            "key": key,
            "rotated": rotated,
            "invited": invited,
            "reset": reset,
        }
        assert {n: a.status_code for n, a in answers.items()} == {
            "token": 200,
            "key": 201,
            "rotated": 201,
            "invited": 201,
            "reset": 200,
        }
        cache_control = {n: a.headers.get("Cache-Control") for n, a in answers.items()}
        assert cache_control == dict.fromkeys(answers, "no-store")
