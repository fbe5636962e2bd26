"""Values validation lets through but Postgres refuses (SQLSTATE class 22) answer 422."""

from __future__ import annotations

import httpx

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
