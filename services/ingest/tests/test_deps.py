"""The calling API key: 401 → 403 → 429, both header forms, coalesced last use."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.db import Database
from milepost_common.domain.api_keys import service as api_key_service
from milepost_common.domain.api_keys.models import ApiKey, Scope
from milepost_common.domain.api_keys.service import IssuedKey
from milepost_common.domain.devices.models import Device
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.principals import SYSTEM
from milepost_common.testing.factories import make_api_key
from milepost_common.testing.plugin import app_client
from milepost_ingest.main import create_app
from milepost_ingest.settings import IngestSettings

URL = "/ingest/v1/positions"
Fix = Callable[..., dict[str, Any]]


def body(fix: Fix, device: Device) -> dict[str, Any]:
    return {"positions": [fix(device)]}


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"


class TestAuthentication:
    async def test_bearer_and_x_api_key_both_work(
        self, client: httpx.AsyncClient, api_key: IssuedKey, device: Device, fix: Fix
    ) -> None:
        for headers in (
            {"Authorization": f"Bearer {api_key.secret}"},
            {"X-API-Key": api_key.secret},
        ):
            response = await client.post(URL, json=body(fix, device), headers=headers)
            assert response.status_code == 202, response.text

    def test_the_document_names_both_ways(self, app: FastAPI) -> None:
        """A generated client learns from the OpenAPI document how to send its key."""
        doc = app.openapi()
        schemes = doc["components"]["securitySchemes"]
        assert schemes["ApiKeyBearer"] == {
            "type": "http",
            "scheme": "bearer",
            "description": schemes["ApiKeyBearer"]["description"],
        }
        assert (schemes["ApiKeyHeader"]["in"], schemes["ApiKeyHeader"]["name"]) == (
            "header",
            "X-API-Key",
        )
        either = [{"ApiKeyBearer": []}, {"ApiKeyHeader": []}]
        assert doc["paths"][URL]["post"]["security"] == either
        assert doc["paths"]["/ingest/v1/batches/{batch_id}"]["get"]["security"] == either
        assert "security" not in doc["paths"]["/ingest/osmand/{api_key}"]["post"]

    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"Authorization": "Bearer "},
            {"Authorization": "Bearer  "},
            {"Authorization": "Basic abc"},
            {"X-API-Key": ""},
            {"X-API-Key": "  "},
        ],
    )
    async def test_missing_key_is_401(
        self, client: httpx.AsyncClient, headers: dict[str, str]
    ) -> None:
        assert_unauthorized(await client.post(URL, json={"positions": []}, headers=headers))

    async def test_unknown_or_altered_key_is_401(
        self, client: httpx.AsyncClient, api_key: IssuedKey
    ) -> None:
        # The last character changed (a key ending in "x" once made "altered" the key itself).
        altered = api_key.secret[:-1] + ("y" if api_key.secret.endswith("x") else "x")
        for key in ("mp_nosuchkeyatall", altered):
            response = await client.post(URL, json={"positions": []}, headers={"X-API-Key": key})
            assert_unauthorized(response)

    async def test_revoked_key_is_401_on_the_next_request(
        self,
        client: httpx.AsyncClient,
        api_key: IssuedKey,
        auth: dict[str, str],
        session: AsyncSession,
        device: Device,
        fix: Fix,
    ) -> None:
        assert (await client.post(URL, json=body(fix, device), headers=auth)).status_code == 202
        await api_key_service.revoke_api_key(session, SYSTEM, api_key.api_key)
        assert_unauthorized(await client.post(URL, json=body(fix, device), headers=auth))

    async def test_expired_key_is_401(
        self, client: httpx.AsyncClient, session: AsyncSession, org: Organization
    ) -> None:
        expired = await make_api_key(
            session, org, expires_at=datetime.now(UTC) - timedelta(seconds=1)
        )
        response = await client.post(
            URL, json={"positions": []}, headers={"X-API-Key": expired.secret}
        )
        assert_unauthorized(response)

    async def test_suspended_organization_is_401(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        org: Organization,
    ) -> None:
        org.suspended_at = datetime.now(UTC)
        session.add(org)
        await session.flush()
        assert_unauthorized(await client.post(URL, json={"positions": []}, headers=auth))


class TestScopes:
    async def test_osmand_only_key_cannot_push_batches(
        self, client: httpx.AsyncClient, session: AsyncSession, org: Organization
    ) -> None:
        osmand_only = await make_api_key(session, org, scopes=[Scope.INGEST_OSMAND])
        response = await client.post(
            URL, json={"positions": []}, headers={"X-API-Key": osmand_only.secret}
        )
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"

    async def test_osmand_accepts_either_scope(
        self, client: httpx.AsyncClient, session: AsyncSession, org: Organization, device: Device
    ) -> None:
        for scopes in ([Scope.INGEST_OSMAND], [Scope.INGEST]):
            key = await make_api_key(session, org, scopes=scopes)
            response = await client.get(
                f"/ingest/osmand/{key.secret}", params={"id": device.unique_id, "lat": 1, "lon": 2}
            )
            assert response.status_code == 200, response.text


class TestRateLimit:
    async def test_over_the_limit_is_429_with_retry_after(
        self,
        make_settings: Callable[..., IngestSettings],
        database: Database,
        redis: Redis,
        auth: dict[str, str],
        device: Device,
        fix: Fix,
    ) -> None:
        app = create_app(make_settings(ingest={"rate_limit": "2/minute"}))
        async with app_client(app, database) as client:
            statuses = [
                (await client.post(URL, json=body(fix, device), headers=auth)).status_code
                for _ in range(3)
            ]
            limited = await client.post(URL, json=body(fix, device), headers=auth)
        assert statuses == [202, 202, 429]
        assert limited.json()["error"]["code"] == "rate_limited"
        assert int(limited.headers["Retry-After"]) >= 1
        assert limited.headers["RateLimit-Limit"] == "2"
        assert limited.headers["RateLimit-Remaining"] == "0"

    async def test_the_organization_setting_wins(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        org: Organization,
    ) -> None:
        org.ingest_rate_limit = "1/minute"
        session.add(org)
        await session.flush()
        first = await client.post(URL, json={"positions": []}, headers=auth)
        second = await client.post(URL, json={"positions": []}, headers=auth)
        assert (first.status_code, second.status_code) == (422, 429)

    async def test_an_unreadable_organization_setting_falls_back_to_the_default(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        org: Organization,
    ) -> None:
        org.ingest_rate_limit = "lots"
        session.add(org)
        await session.flush()
        response = await client.post(URL, json={"positions": []}, headers=auth)
        assert response.status_code == 422

    async def test_each_key_has_its_own_budget(
        self,
        make_settings: Callable[..., IngestSettings],
        database: Database,
        redis: Redis,
        session: AsyncSession,
        org: Organization,
        auth: dict[str, str],
    ) -> None:
        other = await make_api_key(session, org)
        app = create_app(make_settings(ingest={"rate_limit": "1/minute"}))
        async with app_client(app, database) as client:
            await client.post(URL, json={"positions": []}, headers=auth)
            response = await client.post(
                URL, json={"positions": []}, headers={"X-API-Key": other.secret}
            )
        assert response.status_code == 422


class TestLastUsed:
    async def test_last_use_is_written_in_bulk_not_per_request(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        api_key: IssuedKey,
        auth: dict[str, str],
        session: AsyncSession,
    ) -> None:
        for _ in range(3):
            await client.post(URL, json={"positions": []}, headers=auth)
        await session.refresh(api_key.api_key)
        assert api_key.api_key.last_used_at is None
        assert app.state.ctx.usage.pending == 1
        await app.state.ctx.usage.flush()
        key = await session.get(ApiKey, api_key.api_key.id, populate_existing=True)
        assert key is not None
        assert key.last_used_at is not None
        assert datetime.now(UTC) - key.last_used_at < timedelta(seconds=10)
        assert app.state.ctx.usage.pending == 0
