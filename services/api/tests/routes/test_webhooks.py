"""Webhooks: an endpoint's lifecycle and limit, the test ping, private receivers, the pings' hold
on no connection, and the deliveries an owner lists."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from milepost_api.context import ApiContext
from milepost_api.main import create_app
from milepost_api.settings import ApiSettings
from milepost_common.db import create_database, unit_of_work
from milepost_common.domain.audit.models import AuditEntry
from milepost_common.domain.users.models import OrgRole
from milepost_common.domain.webhooks import signing
from milepost_common.domain.webhooks.models import WebhookDelivery, WebhookEndpoint
from milepost_common.settings import DbSettings
from milepost_common.testing.factories import (
    DEFAULT_PASSWORD,
    make_organization,
    make_user,
)
from milepost_common.testing.plugin import app_client
from services.api.tests.api_support import Bearer, Team, serving


def receiver(received: list[dict[str, Any]]) -> Starlette:
    async def hook(request: Request) -> Response:
        received.append({"headers": dict(request.headers), "body": await request.body()})
        return Response(status_code=204)

    return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


@pytest.fixture
def private_refused(api_app: Any) -> Iterator[None]:
    """The api as it runs by default: MILEPOST_WEBHOOKS__ALLOW_PRIVATE off."""
    settings = api_app.state.ctx.settings.webhooks
    original = settings.allow_private
    settings.allow_private = False
    yield
    settings.allow_private = original


def holding_receiver(release: asyncio.Event, waiting: list[int], full: asyncio.Event) -> Starlette:
    """Answers 204 once ``release`` is set; ``waiting[0]`` counts the requests held, ``full``
    is set at the 50th."""

    async def hook(request: Request) -> Response:
        await request.body()
        waiting[0] += 1
        if waiting[0] == 50:
            full.set()
        await release.wait()
        return Response(status_code=204)

    return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


class TestWebhookLifecycle:
    async def test_secret_only_on_create_and_rotation(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        headers = bearer(team.owner)
        created = await client.post(
            "/api/v1/webhooks",
            json={"url": "https://hooks.example.com/x", "event_types": ["alert.created"]},
            headers=headers,
        )
        assert created.status_code == 201
        body = created.json()
        webhook_id = body["id"]
        assert body["secret"].startswith("mpwh_")

        read = await client.get(f"/api/v1/webhooks/{webhook_id}", headers=headers)
        listed = await client.get("/api/v1/webhooks", headers=headers)
        rotated = await client.post(f"/api/v1/webhooks/{webhook_id}/rotate-secret", headers=headers)
        patched = await client.patch(
            f"/api/v1/webhooks/{webhook_id}", json={"enabled": False}, headers=headers
        )
        deleted = await client.delete(f"/api/v1/webhooks/{webhook_id}", headers=headers)
        gone = await client.get(f"/api/v1/webhooks/{webhook_id}", headers=headers)

        assert "secret" not in read.json()
        assert body["secret"] not in listed.text
        assert rotated.json()["secret"] not in (body["secret"], None)
        assert patched.json()["enabled"] is False
        assert (deleted.status_code, gone.status_code) == (204, 404)
        stored = await session.scalars(select(WebhookEndpoint.secret_encrypted))
        assert body["secret"] not in "".join(stored.all())
        actions = (await session.scalars(select(AuditEntry.action))).all()
        assert {
            "webhooks.create",
            "webhooks.rotate_secret",
            "webhooks.update",
            "webhooks.delete",
        } <= set(actions)
        assert body["secret"] not in str(
            [e.diff for e in (await session.scalars(select(AuditEntry))).all()]
        )

    async def test_the_audit_log_keeps_no_token_of_the_receivers_url(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        # Operators of the lowest role read the audit log: the receiver's own token, carried
        # in its URL's query or path (Slack's, Discord's), stays between the organization and
        # its receiver.
        headers = bearer(team.owner)
        created = await client.post(
            "/api/v1/webhooks",
            json={
                "url": "https://hooks.example.com/in?token=FIRST-TOKEN",
                "event_types": ["alert.created"],
            },
            headers=headers,
        )
        webhook = f"/api/v1/webhooks/{created.json()['id']}"
        moved = await client.patch(
            webhook,
            json={"url": "https://hooks.example.com:8443/services/T0/B0/NEXT-TOKEN"},
            headers=headers,
        )
        deleted = await client.delete(webhook, headers=headers)

        assert (created.status_code, moved.status_code, deleted.status_code) == (201, 200, 204)
        diffs = {e.action: e.diff for e in (await session.scalars(select(AuditEntry))).all()}
        assert diffs["webhooks.create"]["url"] == "https://hooks.example.com/…"
        assert diffs["webhooks.update"]["url"] == [
            "https://hooks.example.com/…",
            "https://hooks.example.com:8443/…",
        ]
        assert "TOKEN" not in str(diffs)

    async def test_unknown_event_type_and_bad_url_are_422(
        self, client: httpx.AsyncClient, team: Team, bearer: Bearer
    ) -> None:
        for payload in (
            {"url": "https://hooks.example.com/x", "event_types": ["everything"]},
            {"url": "ftp://hooks.example.com/x", "event_types": ["alert.created"]},
            {"url": "https://u:p@hooks.example.com/x", "event_types": ["alert.created"]},
            # Was stored, then every attempt went to port 443 with Host: hooks.example.com:0.
            {"url": "https://hooks.example.com:0/x", "event_types": ["alert.created"]},
        ):
            response = await client.post(
                "/api/v1/webhooks", json=payload, headers=bearer(team.owner)
            )
            assert response.status_code == 422, payload


class TestLimit:
    async def test_one_endpoint_over_the_limit_is_a_409_and_stores_nothing(
        self,
        api_app: Any,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        bearer: Bearer,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(api_app.state.ctx.settings.api, "max_webhooks_per_org", 1)
        hook = {"url": "https://hooks.example.com/in", "event_types": ["alert.created"]}

        first = await client.post("/api/v1/webhooks", json=hook, headers=bearer(team.owner))
        second = await client.post("/api/v1/webhooks", json=hook, headers=bearer(team.owner))

        assert first.status_code == 201
        assert second.status_code == 409
        assert second.json()["error"]["message"] == (
            "The organization already has the most webhooks it may have (1)."
        )
        stored = await session.scalars(
            select(WebhookEndpoint).where(WebhookEndpoint.org_id == team.org.id)
        )
        assert len(stored.all()) == 1


class TestSendTestPing:
    async def test_ping_is_signed_with_the_endpoint_secret(
        self, client: httpx.AsyncClient, team: Team, bearer: Bearer
    ) -> None:
        received: list[dict[str, Any]] = []
        async with serving(receiver(received)) as address:
            created = (
                await client.post(
                    "/api/v1/webhooks",
                    json={"url": f"http://{address}/hook", "event_types": ["alert.created"]},
                    headers=bearer(team.owner),
                )
            ).json()
            result = await client.post(
                f"/api/v1/webhooks/{created['id']}/test", headers=bearer(team.owner)
            )

        assert result.status_code == 200
        assert result.json()["delivered"] is True
        assert result.json()["status_code"] == 204
        (request,) = received
        assert request["headers"]["milepost-event-id"] == result.json()["event_id"]
        assert signing.verify(
            created["secret"], request["body"], request["headers"]["milepost-signature"]
        )

    async def test_private_addresses_are_refused_unless_allowed(
        self, client: httpx.AsyncClient, api_app: Any, team: Team, bearer: Bearer
    ) -> None:
        ctx: ApiContext = api_app.state.ctx
        created = (
            await client.post(
                "/api/v1/webhooks",
                json={"url": "http://127.0.0.1:9/hook", "event_types": ["alert.created"]},
                headers=bearer(team.owner),
            )
        ).json()
        original = ctx.settings.webhooks.allow_private
        ctx.settings.webhooks.allow_private = False
        try:
            result = await client.post(
                f"/api/v1/webhooks/{created['id']}/test", headers=bearer(team.owner)
            )
        finally:
            ctx.settings.webhooks.allow_private = original
        assert result.json()["delivered"] is False
        assert result.json()["error"].startswith("refused")


class TestPrivateReceivers:
    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1:8080/hook",
            "http://10.1.2.3/hook",
            "https://192.168.0.10/hook",
            "http://[::1]:9000/hook",
            "http://[::ffff:169.254.169.254]/latest",
            "http://2130706433/hook",
            "http://[fec0::1]/hook",  # site-local: not global, whatever ipaddress says
            "http://192.0.0.8/hook",
            "http://localhost:3000/hook",
            "http://LOCALHOST./hook",
            "http://hooks.localhost/hook",
        ],
    )
    async def test_a_private_receiver_is_refused_naming_the_setting(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        bearer: Bearer,
        private_refused: None,
        url: str,
    ) -> None:
        response = await client.post(
            "/api/v1/webhooks",
            json={"url": url, "event_types": ["alert.created"]},
            headers=bearer(team.owner),
        )

        error = response.json()["error"]
        assert response.status_code == 422
        assert error["code"] == "validation_failed"
        assert "MILEPOST_WEBHOOKS__ALLOW_PRIVATE" in error["message"]
        assert error["details"][0]["loc"] == ["body", "url"]
        stored = await session.scalars(
            select(WebhookEndpoint).where(WebhookEndpoint.org_id == team.org.id)
        )
        assert stored.all() == []

    async def test_a_public_name_is_accepted_without_a_lookup(
        self,
        client: httpx.AsyncClient,
        team: Team,
        bearer: Bearer,
        private_refused: None,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        def no_dns(*args: object, **kwargs: object) -> None:
            raise AssertionError("looked up at creation")

        monkeypatch.setattr(socket, "getaddrinfo", no_dns)
        monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", no_dns)
        response = await client.post(
            "/api/v1/webhooks",
            json={"url": "https://hooks.invalid/x", "event_types": ["alert.created"]},
            headers=bearer(team.owner),
        )

        assert response.status_code == 201

    async def test_changing_the_url_to_a_private_one_is_refused(
        self, client: httpx.AsyncClient, team: Team, bearer: Bearer, private_refused: None
    ) -> None:
        created = await client.post(
            "/api/v1/webhooks",
            json={"url": "https://hooks.example.com/x", "event_types": ["alert.created"]},
            headers=bearer(team.owner),
        )

        patched = await client.patch(
            f"/api/v1/webhooks/{created.json()['id']}",
            json={"url": "http://127.0.0.1/hook"},
            headers=bearer(team.owner),
        )
        read = await client.get(
            f"/api/v1/webhooks/{created.json()['id']}", headers=bearer(team.owner)
        )

        assert patched.status_code == 422
        assert "MILEPOST_WEBHOOKS__ALLOW_PRIVATE" in patched.json()["error"]["message"]
        assert read.json()["url"] == "https://hooks.example.com/x"

    async def test_the_setting_allows_them(
        self, client: httpx.AsyncClient, team: Team, bearer: Bearer
    ) -> None:
        response = await client.post(
            "/api/v1/webhooks",
            json={"url": "http://127.0.0.1:9/hook", "event_types": ["alert.created"]},
            headers=bearer(team.owner),
        )

        assert response.status_code == 201

    def test_the_shared_setting_is_read_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("MILEPOST_WEBHOOKS__ALLOW_PRIVATE", "true")
        monkeypatch.setenv("MILEPOST_API__WEBHOOK_ALLOW_PRIVATE", "false")  # the old name
        settings = ApiSettings(env="test")
        assert settings.webhooks.allow_private is True
        assert not hasattr(settings.api, "webhook_allow_private")


class TestPingsHoldNoConnection:
    async def test_fifty_pings_to_a_slow_receiver_leave_the_api_answering(
        self, committed_database: str, settings_factory: Callable[..., ApiSettings]
    ) -> None:
        # The app's own pool, on a database the test does not hold: 3 connections, and a
        # request that finds none within a second is answered 503.
        settings = settings_factory(
            ApiSettings,
            db={"url": committed_database, "pool_size": 3, "max_overflow": 0, "pool_timeout_s": 1},
            auth={"principal_cache_s": 0},
            api={"rate_limit": "100000/minute"},
            webhooks={"allow_private": True},
        )
        db = create_database(DbSettings(url=committed_database))
        async with unit_of_work(db) as session:
            owner = await make_user(session, await make_organization(session), role=OrgRole.OWNER)
        await db.dispose()
        release, waiting, full = asyncio.Event(), [0], asyncio.Event()
        async with (
            serving(holding_receiver(release, waiting, full)) as address,
            app_client(create_app(settings)) as client,
        ):
            login = {"username": owner.email, "password": DEFAULT_PASSWORD}
            token = (await client.post("/api/v1/auth/token", data=login)).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            created = await client.post(
                "/api/v1/webhooks",
                json={"url": f"http://{address}/hook", "event_types": ["alert.created"]},
                headers=headers,
            )
            ping_url = f"/api/v1/webhooks/{created.json()['id']}/test"
            pings = [asyncio.create_task(client.post(ping_url, headers=headers)) for _ in range(50)]
            with suppress(TimeoutError):  # all 50 waiting on the receiver, unless starved
                await asyncio.wait_for(full.wait(), 5)
            started = time.monotonic()
            vehicles = await client.get("/api/v1/vehicles", headers=headers)
            webhooks = await client.get("/api/v1/webhooks", headers=headers)
            elapsed = time.monotonic() - started
            release.set()
            answers = await asyncio.gather(*pings)

        assert (vehicles.status_code, webhooks.status_code) == (200, 200)
        assert elapsed < 1.0
        assert waiting[0] == 50
        assert [a.status_code for a in answers] == [200] * 50
        assert all(a.json()["delivered"] for a in answers)


class TestListDeliveries:
    async def test_lists_the_endpoints_deliveries(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        created = (
            await client.post(
                "/api/v1/webhooks",
                json={"url": "https://hooks.example.com/x", "event_types": ["alert.created"]},
                headers=bearer(team.owner),
            )
        ).json()
        for _ in range(3):
            session.add(
                WebhookDelivery(
                    org_id=team.org.id,
                    endpoint_id=uuid.UUID(created["id"]),
                    event_id=uuid.uuid4(),
                    event_type="alert.created",
                )
            )
        await session.flush()
        page = await client.get(
            f"/api/v1/webhooks/{created['id']}/deliveries",
            params={"limit": 2, "status": "pending"},
            headers=bearer(team.owner),
        )
        assert len(page.json()["items"]) == 2
        assert page.json()["next_cursor"] is not None
