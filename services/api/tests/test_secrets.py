"""Secrets a client sends (passwords, refresh and one-time tokens, a receiver's credentials)
come back in no answer and reach no log line, whatever the request's other faults."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain.audit.models import AuditEntry
from milepost_common.web.middleware import log as access_log
from services.api.tests.api_support import Bearer, Team

SECRET = "Sekr3t-never-shown-0001"
OTHER = "Sekr3t-never-shown-0002"


@pytest.fixture
def logged(
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    """Everything the app logged since the test began: each record as the app's own handler
    writes it (tracebacks included) and the access log's lines (written straight to stdout)."""
    # The test's own HTTP client logs the URLs it requests; the app is what is checked.
    monkeypatch.setattr(logging.getLogger("httpx"), "disabled", True)
    caplog.set_level(logging.DEBUG)
    capsys.readouterr()
    rendered = next(
        h.formatter
        for h in logging.getLogger().handlers
        if isinstance(h.formatter, structlog.stdlib.ProcessorFormatter)
    )

    def everything() -> str:
        access_log.flush()
        return "\n".join(
            [caplog.text, *map(rendered.format, caplog.records), capsys.readouterr().out]
        )

    return everything


class TestSignInFlows:
    @pytest.mark.parametrize(
        ("path", "body"),
        [
            ("/api/v1/auth/invitations/accept", {"token": SECRET, "password": "short"}),
            ("/api/v1/auth/invitations/accept", {"token": SECRET, "password": OTHER, "x": 1}),
            ("/api/v1/auth/password-reset", {"token": SECRET, "password": "short"}),
            ("/api/v1/auth/password-reset", {"token": 7, "password": OTHER * 9}),
            ("/api/v1/auth/refresh", {"refresh_token": SECRET, "x": 1}),
            ("/api/v1/auth/logout", {"refresh_token": [SECRET]}),
        ],
    )
    async def test_a_refused_body_echoes_no_secret(
        self, client: httpx.AsyncClient, logged: Any, path: str, body: dict[str, Any]
    ) -> None:
        response = await client.post(path, json=body)
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "validation_failed"
        for secret in (SECRET, OTHER):
            assert secret not in response.text
            assert secret not in logged()

    async def test_unknown_tokens_are_refused_without_echo(
        self, client: httpx.AsyncClient, logged: Any
    ) -> None:
        answers = [
            await client.post("/api/v1/auth/refresh", json={"refresh_token": SECRET}),
            await client.post(
                "/api/v1/auth/invitations/accept", json={"token": SECRET, "password": OTHER}
            ),
            await client.post(
                "/api/v1/auth/password-reset", json={"token": SECRET, "password": OTHER}
            ),
        ]
        assert [a.status_code for a in answers] == [401, 400, 400]
        for answer in answers:
            assert SECRET not in answer.text
            assert OTHER not in answer.text
        assert SECRET not in logged()

    async def test_a_failed_login_echoes_no_password(
        self, client: httpx.AsyncClient, team: Team, logged: Any
    ) -> None:
        answers = [
            await client.post(
                "/api/v1/auth/token", data={"username": team.owner.email, "password": SECRET}
            ),
            await client.post("/api/v1/auth/token", data={"password": SECRET}),
            await client.post(
                "/api/v1/auth/token", json={"username": team.owner.email, "password": SECRET}
            ),
        ]
        assert [a.status_code for a in answers] == [401, 422, 422]
        for answer in answers:
            assert SECRET not in answer.text
        assert SECRET not in logged()

    async def test_a_password_typed_as_the_email_is_not_audited(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        # Autofill (or haste) puts the password in the email field: the failure is audited,
        # and the audit log, which operators read, must not keep what was typed there.
        response = await client.post(
            "/api/v1/auth/token", data={"username": SECRET, "password": OTHER}
        )
        assert response.status_code == 401
        [entry] = (
            await session.scalars(
                select(AuditEntry).where(col(AuditEntry.action) == "auth.login_failed")
            )
        ).all()
        assert SECRET.lower() not in repr(entry.model_dump()).lower()
        assert entry.actor_label == "(not an email address)"

    async def test_a_refused_password_change_echoes_neither_password(
        self, client: httpx.AsyncClient, team: Team, bearer: Bearer, logged: Any
    ) -> None:
        headers = bearer(team.viewer)
        answers = [
            await client.post(
                "/api/v1/me/password",
                json={"current_password": SECRET, "new_password": "short"},
                headers=headers,
            ),
            await client.post(
                "/api/v1/me/password",
                json={"current_password": SECRET, "new_password": OTHER},
                headers=headers,
            ),
        ]
        assert [a.status_code for a in answers] == [422, 401]
        for answer in answers:
            assert SECRET not in answer.text
            assert OTHER not in answer.text
        assert SECRET not in logged()
        assert OTHER not in logged()


class TestWebhookReceivers:
    @pytest.mark.parametrize(
        "body",
        [
            {"url": f"https://hooks.example.com/h?token={SECRET}", "event_types": ["nope"]},
            {"url": f"https://user:{SECRET}@hooks.example.com/h", "event_types": ["alert.created"]},
            {"url": f"https://{SECRET}@hooks.example.com/h", "event_types": ["alert.created"]},
            {"url": f"ftp://hooks.example.com/h?token={SECRET}", "event_types": ["alert.created"]},
            {"url": f"https://127.0.0.1/h?token={SECRET}", "event_types": ["alert.created"]},
        ],
    )
    async def test_a_refused_receiver_is_not_echoed(
        self,
        client: httpx.AsyncClient,
        team: Team,
        bearer: Bearer,
        logged: Any,
        body: dict[str, Any],
        api_app: Any,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(api_app.state.ctx.settings.webhooks, "allow_private", False)
        response = await client.post("/api/v1/webhooks", json=body, headers=bearer(team.owner))
        assert response.status_code == 422
        assert SECRET not in response.text
        assert SECRET not in logged()

    async def test_a_database_failure_logs_no_receiver_url(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        bearer: Bearer,
        logged: Any,
    ) -> None:
        # A real failure of the insert (the trigger goes with the test's transaction): its
        # traceback is logged, and the statement's parameters hold the receiver's URL.
        await session.execute(
            text(
                "CREATE FUNCTION pg_temp.refuse() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$"
            )
        )
        await session.execute(
            text(
                "CREATE TRIGGER refuse BEFORE INSERT ON webhook_endpoints"
                " FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse()"
            )
        )
        response = await client.post(
            "/api/v1/webhooks",
            json={
                "url": f"https://hooks.example.com/h?token={SECRET}",
                "event_types": ["alert.created"],
            },
            headers=bearer(team.owner),
        )
        assert response.status_code == 500
        text_logged = logged()
        assert "refused by the test" in text_logged  # the failure itself is logged
        assert SECRET not in text_logged
