from collections.abc import Callable

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest
from fastapi import FastAPI

from milepost_common.settings import CommonSettings
from milepost_common.testing.plugin import app_client

from .conftest import build_app


def assert_envelope(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["details"], list)
    assert error["trace_id"] == response.headers["X-Request-ID"]
    return error  # type: ignore[no-any-return]


class TestEnvelope:
    async def test_unknown_route_is_not_found(self, client: httpx.AsyncClient) -> None:
        assert_envelope(await client.get("/kit/v1/no-such-thing"), 404, "not_found")

    async def test_domain_not_found(self, client: httpx.AsyncClient) -> None:
        error = assert_envelope(await client.get("/kit/v1/orgs/1"), 404, "not_found")
        assert error["message"] == "Organization not found."

    async def test_wrong_method(self, client: httpx.AsyncClient) -> None:
        assert_envelope(await client.delete("/kit/v1/orgs/1"), 405, "method_not_allowed")

    async def test_validation_lists_details(self, client: httpx.AsyncClient) -> None:
        error = assert_envelope(await client.get("/kit/v1/orgs/abc"), 422, "validation_failed")
        assert error["details"][0]["loc"] == ["path", "org_id"]  # type: ignore[index]

    async def test_unparseable_body_is_malformed(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/kit/v1/orgs", content=b"{nope", headers={"Content-Type": "application/json"}
        )
        assert_envelope(response, 400, "malformed_body")

    async def test_json_body_that_is_not_utf8_is_malformed(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/kit/v1/orgs", content=b"\x16\xffB", headers={"Content-Type": "application/json"}
        )
        assert_envelope(response, 400, "malformed_body")

    async def test_text_postgres_cannot_store_is_a_validation_error(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post("/kit/v1/orgs", json={"name": "nul\u0000"})
        assert_envelope(response, 422, "validation_failed")

    async def test_sane_incoming_request_id_is_kept(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/kit/v1/orgs/1", headers={"X-Request-ID": "abc-123-def-456"})
        assert response.json()["error"]["trace_id"] == "abc-123-def-456"

    async def test_insane_request_id_is_replaced(self, client: httpx.AsyncClient) -> None:
        response = await client.get(
            "/kit/v1/orgs/1", headers={"X-Request-ID": "<script>alert(1)</script>"}
        )
        assert "<" not in response.headers["X-Request-ID"]
        assert len(response.headers["X-Request-ID"]) == 32


async def test_unhandled_error_is_generic_and_traced(
    kit_settings: CommonSettings, kit_app_factory: Callable[..., FastAPI]
) -> None:
    app = kit_app_factory(kit_settings)
    async with app_client(app) as client:
        client._transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        response = await client.get("/kit/v1/boom")
    error = assert_envelope(response, 500, "internal_error")
    assert "secret internal detail" not in response.text
    assert error["message"] == "Internal server error."


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.AdminShutdownError("terminating connection (administrator command)"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.exceptions.TooManyConnectionsError("too many clients already"),
    ],
)
async def test_postgres_away_under_a_raw_asyncpg_read_is_503(
    kit_settings: CommonSettings, error: Exception
) -> None:
    """The hot reads run on asyncpg directly: Postgres restarting, starting up or full must
    answer 503 with Retry-After, like the same through a session, not 500."""
    app = build_app(kit_settings)

    async def away() -> None:
        raise error

    app.add_api_route("/kit/v1/away", away)
    async with app_client(app) as client:
        client._transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        response = await client.get("/kit/v1/away")
    assert_envelope(response, 503, "unavailable")
    assert response.headers["Retry-After"]
