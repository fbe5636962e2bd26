"""Operators' own invitation and reset pages in the console, the links that lead there, the
console's 404 page, and the helpful 422 of the token form."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from milepost_common.domain.sessions import service as sessions
from milepost_common.domain.sessions.models import OneTimeToken, TokenPurpose
from milepost_common.testing.factories import DEFAULT_PASSWORD, make_organization, make_user
from milepost_common.web.errors import FORM_HINT
from services.admin.tests.admin_support import Staff, console_as

NEW_PASSWORD = "a brand new operator passphrase"
SESSION_COOKIE = "milepost_admin_session"


def hidden_token(html: str) -> str:
    """The token the account form will post (its hidden field, as the page gives it)."""
    match = re.search(r'name="token" id="account-token" value="([^"]*)"', html)
    assert match, "no token field in the page"
    return match.group(1)


def token_of(link: str) -> str:
    return parse_qs(urlsplit(link).fragment)["token"][0]


async def invite_operator(client: httpx.AsyncClient, staff: Staff, email: str) -> dict[str, Any]:
    """A new support operator made by invitation (its id and ``invite_url``)."""
    created = await client.post(
        "/admin/v1/operators",
        json={"email": email, "role": "support"},
        headers=staff.superadmin_auth,
    )
    assert created.status_code == 201, created.text
    answer: dict[str, Any] = created.json()
    return answer


async def log_in(client: httpx.AsyncClient, email: str, password: str) -> int:
    form = {"username": email, "password": password}
    return (await client.post("/admin/v1/auth/token", data=form)).status_code


class TestLinks:
    async def test_operator_links_open_the_console(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        created = await invite_operator(client, staff, "new-op@example.com")
        reset = await client.post(
            f"/admin/v1/operators/{staff.support.id}/reset-password",
            headers=staff.superadmin_auth,
        )

        assert urlsplit(created["invite_url"]).path == "/admin/invitation"
        assert urlsplit(reset.json()["reset_url"]).path == "/admin/password-reset"

    async def test_user_links_open_the_api_pages(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        invited = await client.post(
            f"/admin/v1/organizations/{org.id}/users",
            json={"email": "member@example.com", "role": "viewer"},
            headers=staff.operator_auth,
        )
        reset = await client.post(
            f"/admin/v1/users/{invited.json()['id']}/reset-password", headers=staff.operator_auth
        )

        assert urlsplit(invited.json()["invite_url"]).path == "/api/account/invitation"
        assert urlsplit(reset.json()["reset_url"]).path == "/api/account/password-reset"


class TestResetPage:
    async def test_operator_sets_a_new_password_and_logs_in(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        link = await client.post(
            f"/admin/v1/operators/{staff.support.id}/reset-password",
            headers=staff.superadmin_auth,
        )
        path = urlsplit(link.json()["reset_url"]).path
        form = {"token": token_of(link.json()["reset_url"]), "password": NEW_PASSWORD}

        opened = await client.get(path)
        done = await client.post(path, data={**form, "confirm": NEW_PASSWORD})
        again = await client.post(path, data={**form, "confirm": NEW_PASSWORD})

        assert opened.status_code == 200
        assert 'name="token"' in opened.text
        assert "/admin/static/account.js" in opened.text
        assert done.status_code == 200
        assert "Done: your password is set." in done.text
        assert await log_in(client, staff.support.email, NEW_PASSWORD) == 200
        assert again.status_code == 400
        assert "already used" in again.text

    async def test_passwords_that_differ_are_shown_on_the_form(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        token = await sessions.issue_one_time_token(
            session, staff.support, TokenPurpose.PASSWORD_RESET
        )
        form = {"token": token, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD + "!"}

        response = await client.post("/admin/password-reset", data=form)

        assert response.status_code == 422
        assert "The two passwords differ." in response.text
        assert await log_in(client, staff.support.email, DEFAULT_PASSWORD) == 200

    async def test_the_form_shown_again_keeps_the_links_token(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        # The answer's address has no fragment: without the token in its form, the page's
        # script would take the link for incomplete and hide the form.
        token = await sessions.issue_one_time_token(
            session, staff.support, TokenPurpose.PASSWORD_RESET
        )
        form = {"token": token, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD + "!"}

        again = await client.post("/admin/password-reset", data=form)
        retried = await client.post(
            "/admin/password-reset",
            data={
                "token": hidden_token(again.text),
                "password": NEW_PASSWORD,
                "confirm": NEW_PASSWORD,
            },
        )

        assert hidden_token(again.text) == token
        assert again.headers["cache-control"] == "no-store"
        assert "Done: your password is set." in retried.text

    async def test_a_users_link_does_not_redeem_in_the_console(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)
        before = user.password_hash
        token = await sessions.issue_one_time_token(session, user, TokenPurpose.PASSWORD_RESET)
        form = {"token": token, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}

        response = await client.post("/admin/password-reset", data=form)

        assert response.status_code == 400
        assert "This link is invalid" in response.text
        await session.refresh(user)
        assert user.password_hash == before
        unused = await session.scalar(select(OneTimeToken).where(OneTimeToken.user_id == user.id))
        assert unused is not None
        assert unused.used_at is None


class TestInvitationPage:
    async def test_invited_operator_chooses_a_password(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        created = await invite_operator(client, staff, "invited-op@example.com")
        form = {"token": token_of(created["invite_url"]), "password": NEW_PASSWORD}

        done = await client.post("/admin/invitation", data={**form, "confirm": NEW_PASSWORD})

        assert "Done: your password is set." in done.text
        assert await log_in(client, "invited-op@example.com", NEW_PASSWORD) == 200


class TestSessionsEnd:
    """A console session lives for hours in Redis: whatever closes the account's ways in
    closes it too, whether or not it is used meanwhile."""

    async def test_a_password_reset_ends_the_operators_console_sessions(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        await console_as(client, staff.support)
        link = await client.post(
            f"/admin/v1/operators/{staff.support.id}/reset-password",
            headers=staff.superadmin_auth,
        )
        form = {"token": token_of(link.json()["reset_url"]), "password": NEW_PASSWORD}

        done = await client.post("/admin/password-reset", data={**form, "confirm": NEW_PASSWORD})
        stolen = await client.get("/admin/organizations")

        assert "Done: your password is set." in done.text
        assert stolen.status_code == 303
        assert stolen.headers["location"].startswith("/admin/login")

    async def test_a_deactivation_ends_them_though_they_are_not_used_before_reactivation(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        await console_as(client, staff.support)
        for step in ("deactivate", "reactivate"):
            changed = await client.post(
                f"/admin/v1/operators/{staff.support.id}/{step}", headers=staff.superadmin_auth
            )
            assert changed.status_code == 200

        stolen = await client.get("/admin/organizations")

        assert stolen.status_code == 303
        client.cookies.clear()
        await console_as(client, staff.support)  # the operator logs in again
        assert (await client.get("/admin/organizations")).status_code == 200

    async def test_a_password_reset_ends_them_in_the_tables_too(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        await console_as(client, staff.support)
        link = await client.post(
            f"/admin/v1/operators/{staff.support.id}/reset-password",
            headers=staff.superadmin_auth,
        )
        form = {"token": token_of(link.json()["reset_url"]), "password": NEW_PASSWORD}
        await client.post("/admin/password-reset", data={**form, "confirm": NEW_PASSWORD})

        stolen = await client.get("/admin/models/user/list")

        assert stolen.status_code == 303
        assert stolen.headers["location"].startswith("/admin/login")

    async def test_a_login_over_a_live_session_ends_that_session(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        # Someone else signs in on the browser a support operator left signed in: the
        # support operator's session must not stay usable (for hours) by its copied cookie.
        await console_as(client, staff.support)
        left_open = client.cookies[SESSION_COOKIE]
        await console_as(client, staff.operator)
        client.cookies.clear()
        client.cookies.set(SESSION_COOKIE, left_open)

        stolen = await client.get("/admin/organizations")

        assert stolen.status_code == 303
        assert stolen.headers["location"].startswith("/admin/login")

    async def test_a_promotion_ends_the_operators_console_sessions(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        # A session opened as support (left open, or taken) does not gain the new rights:
        # the operator signs in again to work with them.
        await console_as(client, staff.support)
        promoted = await client.patch(
            f"/admin/v1/operators/{staff.support.id}",
            json={"role": "operator"},
            headers=staff.superadmin_auth,
        )

        stolen = await client.get("/admin/organizations")

        assert promoted.status_code == 200
        assert stolen.status_code == 303
        assert stolen.headers["location"].startswith("/admin/login")
        client.cookies.clear()
        console = await console_as(client, staff.support)  # signed in again, as operator
        created = await console.submit("/admin/organizations", {"name": "Acme"})
        assert created.status_code == 303, created.text

    async def test_a_role_changed_in_the_console_keeps_the_superadmins_own_session(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        console = await console_as(client, staff.superadmin)

        changed = await console.submit(
            f"/admin/operators/{staff.support.id}/role", {"role": "operator"}
        )
        page = await client.get("/admin/operators")

        assert changed.status_code == 303
        assert page.status_code == 200
        assert f"Operator {staff.support.email} is now operator." in page.text

    async def test_a_redeemed_link_kills_the_accounts_other_links(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        created = await invite_operator(client, staff, "invited-op@example.com")
        reset = await client.post(
            f"/admin/v1/operators/{created['id']}/reset-password",
            headers=staff.superadmin_auth,
        )
        by_reset = {"token": token_of(reset.json()["reset_url"]), "password": NEW_PASSWORD}
        by_invitation = {
            "token": token_of(created["invite_url"]),
            "password": "another operator passphrase",
        }

        await client.post("/admin/password-reset", data={**by_reset, "confirm": NEW_PASSWORD})
        late = await client.post(
            "/admin/invitation", data={**by_invitation, "confirm": by_invitation["password"]}
        )

        assert late.status_code == 400
        assert await log_in(client, "invited-op@example.com", NEW_PASSWORD) == 200
        assert await log_in(client, "invited-op@example.com", by_invitation["password"]) == 401


class TestConsoleNotFound:
    @pytest.mark.parametrize("path", ["/admin/no-such-page", "/admin/organizations/x/nothing"])
    async def test_unknown_console_page_is_an_html_404(
        self, client: httpx.AsyncClient, path: str
    ) -> None:
        response = await client.get(path)

        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
        assert "There is no such page in the console." in response.text
        assert "Content-Security-Policy" in response.headers

    @pytest.mark.parametrize(
        "path", ["/admin/v1/no-such-thing", "/admin/v1", "/admin/static/no-such-file.css"]
    )
    async def test_api_and_files_keep_the_envelope(
        self, client: httpx.AsyncClient, path: str
    ) -> None:
        response = await client.get(path)

        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"

    @pytest.mark.parametrize(
        ("path", "status"),
        [("/admin/docs", 200), ("/admin/redoc", 200), ("/admin/openapi.json", 200)],
    )
    async def test_other_routes_are_not_shadowed(
        self, client: httpx.AsyncClient, path: str, status: int
    ) -> None:
        assert (await client.get(path)).status_code == status

    async def test_the_tables_view_is_not_shadowed(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/admin/models/", follow_redirects=False)

        assert "There is no such page in the console." not in response.text
        assert response.status_code in (200, 302, 303, 307)


class TestHelpfulValidationErrors:
    async def test_json_to_the_token_form(self, client: httpx.AsyncClient, staff: Staff) -> None:
        response = await client.post(
            "/admin/v1/auth/token",
            json={"username": staff.support.email, "password": DEFAULT_PASSWORD},
        )

        assert response.status_code == 422
        assert FORM_HINT in response.json()["error"]["message"]
