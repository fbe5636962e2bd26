"""What a person meets in a browser at the api: the landing page, the account pages behind
invitation and reset links, the docs, and the helpful answers where no operation lives."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.sessions import service as sessions
from milepost_common.domain.sessions.models import TokenPurpose
from milepost_common.testing.factories import DEFAULT_PASSWORD, make_operator
from milepost_common.web.errors import FORM_HINT, OFFSET_HINT
from services.api.tests.api_support import Bearer, Team

NEW_PASSWORD = "a brand new passphrase"


def assert_self_only(response: httpx.Response) -> None:
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self';" in policy
    assert "<script>" not in response.text


class TestAccountPages:
    @pytest.mark.parametrize(
        ("path", "endpoint"),
        [
            ("/api/account/invitation", "/api/v1/auth/invitations/accept"),
            ("/api/account/password-reset", "/api/v1/auth/password-reset"),
        ],
    )
    async def test_page_posts_to_its_route_with_its_own_script(
        self, client: httpx.AsyncClient, path: str, endpoint: str
    ) -> None:
        response = await client.get(path)

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert_self_only(response)
        assert f'data-endpoint="{endpoint}"' in response.text
        assert "now log in with your app" in response.text.lower()
        for asset in re.findall(r'(?:src|href)="(/api/static/[^"]+)"', response.text):
            assert (await client.get(asset)).status_code == 200

    async def test_links_of_owners_open_the_pages(
        self, client: httpx.AsyncClient, team: Team, bearer: Bearer
    ) -> None:
        invited = await client.post(
            "/api/v1/users",
            json={"email": "page@example.com", "role": "viewer"},
            headers=bearer(team.owner),
        )
        reset = await client.post(
            f"/api/v1/users/{team.viewer.id}/password-reset", headers=bearer(team.owner)
        )

        invitation = urlsplit(invited.json()["invite_url"])
        assert (invitation.path, invitation.query) == ("/api/account/invitation", "")
        assert invitation.fragment.startswith("token=mpot_")
        reset_link = urlsplit(reset.json()["reset_url"])
        assert (reset_link.path, reset_link.query) == ("/api/account/password-reset", "")
        assert (await client.get(invitation.path)).status_code == 200

    async def test_an_operators_link_does_not_redeem_here(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        operator = await make_operator(session)
        before = operator.password_hash
        token = await sessions.issue_one_time_token(session, operator, TokenPurpose.PASSWORD_RESET)

        response = await client.post(
            "/api/v1/auth/password-reset", json={"token": token, "password": NEW_PASSWORD}
        )

        assert response.status_code == 400
        await session.refresh(operator)
        assert operator.password_hash == before


class TestFrontDoor:
    async def test_landing_page_links_the_docs_and_the_console(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/")

        assert response.status_code == 200
        assert_self_only(response)
        links = set(re.findall(r'href="([^"]+)"', response.text))
        assert {"/api/docs", "/ingest/docs", "/admin/docs", "/admin/", "/favicon.ico"} <= links

    async def test_favicon_is_an_icon(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/favicon.ico")

        assert response.status_code == 200
        assert response.headers["content-type"] == "image/x-icon"
        assert response.content[:4] == b"\x00\x00\x01\x00"

    async def test_api_root_points_to_the_docs(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/")

        assert response.status_code == 200
        assert response.json()["docs"] == "/api/docs"
        assert (await client.get(response.json()["docs"])).status_code == 200
        assert (await client.get(response.json()["redoc"])).status_code == 200

    async def test_unknown_route_keeps_the_envelope(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/v2/vehicles")

        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        assert "/api/docs" in response.json()["error"]["message"]


class TestHelpfulValidationErrors:
    async def test_json_to_the_token_form(self, client: httpx.AsyncClient, team: Team) -> None:
        response = await client.post(
            "/api/v1/auth/token", json={"username": team.viewer.email, "password": DEFAULT_PASSWORD}
        )

        assert response.status_code == 422
        assert FORM_HINT in response.json()["error"]["message"]

    async def test_unencoded_offset_in_a_query(
        self, client: httpx.AsyncClient, team: Team, bearer: Bearer
    ) -> None:
        response = await client.get(
            "/api/v1/trips?from=2026-01-01T00:00:00+01:00", headers=bearer(team.viewer)
        )

        assert response.status_code == 422
        assert OFFSET_HINT in response.json()["error"]["message"]
