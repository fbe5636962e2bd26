"""Values validation lets through but Postgres refuses (SQLSTATE class 22) answer 422."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import httpx
from fastapi import FastAPI
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.db import Database, Reads
from milepost_common.testing.factories import make_device
from milepost_devstack.net import free_ports
from services.api.tests.api_support import Bearer, Team, error_code


class TestUnstorableText:
    async def test_nul_characters_are_422_not_500(
        self, client: httpx.AsyncClient, team: Team, bearer: Bearer
    ) -> None:
        headers = bearer(team.owner)
        in_body = await client.post("/api/v1/api-keys", json={"name": "a\u0000b"}, headers=headers)
        in_query = await client.get("/api/v1/vehicles", params={"q": "x\x00"}, headers=headers)
        in_json = await client.post(
            "/api/v1/alert-rules",
            json={"name": "n\u0000", "type": "idle", "params": {"min_duration_s": 60}},
            headers=headers,
        )
        for response in (in_body, in_query, in_json):
            assert response.status_code == 422
            assert error_code(response) == "validation_failed"
        after = await client.get("/api/v1/vehicles", headers=headers)
        assert after.status_code == 200


class TestValuesOutOfRange:
    async def test_a_time_before_year_1_in_utc_is_422_not_500(
        self, client: httpx.AsyncClient, team: Team, bearer: Bearer
    ) -> None:
        response = await client.post(
            "/api/v1/api-keys",
            json={"name": "old", "expires_at": "0001-01-01T00:01:00+01:00"},
            headers=bearer(team.owner),
        )
        assert response.status_code == 422, response.text
        assert error_code(response) == "validation_failed"


class TestPostgresAwayFromTheReadPool:
    async def test_a_hot_read_answers_503_when_its_pool_cannot_connect(
        self,
        client: httpx.AsyncClient,
        api_app: FastAPI,
        database: Database,
        session: AsyncSession,
        team: Team,
        bearer: Bearer,
    ) -> None:
        device = await make_device(session, team.org)
        headers = bearer(team.viewer)
        url = f"/api/v1/vehicles/{device.id}/positions"
        assert (await client.get(url, headers=headers)).status_code == 200
        (port,) = free_ports(1)  # nothing listens there: Postgres is away
        away = Reads(
            f"postgresql://milepost@127.0.0.1:{port}/milepost",
            size=1,
            server_settings={},
            timeout=1,
        )
        api_app.state.db = replace(database, reads=away)
        try:
            response = await client.get(url, headers=headers)
        finally:
            api_app.state.db = database
            await away.close()
        assert response.status_code == 503
        assert error_code(response) == "unavailable"
        assert response.headers["Retry-After"]

    async def test_a_hot_read_answers_503_when_no_connection_frees_up_in_time(
        self,
        client: httpx.AsyncClient,
        api_app: FastAPI,
        database: Database,
        database_url: str,
        session: AsyncSession,
        team: Team,
        bearer: Bearer,
    ) -> None:
        device = await make_device(session, team.org)
        dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
        busy = Reads(dsn, size=1, server_settings={}, timeout=5, acquire_timeout_s=0.2)
        api_app.state.db = replace(database, reads=busy)
        slow = asyncio.create_task(busy.fetch("SELECT pg_sleep(2)"))  # holds the one connection
        try:
            await asyncio.sleep(0.5)
            response = await client.get(
                f"/api/v1/vehicles/{device.id}/positions", headers=bearer(team.viewer)
            )
        finally:
            api_app.state.db = database
            await slow
            await busy.close()
        assert response.status_code == 503
        assert error_code(response) == "unavailable"
