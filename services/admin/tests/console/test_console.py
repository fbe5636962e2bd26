"""The console: form login with a session cookie, CSRF on every change, roles, pages."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from admin_support import (
    NO_SESSION_FORMS,
    Console,
    Staff,
    audit_actions,
    console_as,
    console_routes,
    filled,
    log_in,
    one_of_everything,
    submit_login,
)
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_admin.console import tables
from milepost_common.domain.ingest_batches.models import BatchSource, BatchStatus, IngestBatch
from milepost_common.domain.organizations import service as organization_service
from milepost_common.testing.factories import (
    DEFAULT_PASSWORD,
    make_api_key,
    make_device,
    make_organization,
    make_user,
)

PAGES = [
    "/admin/",
    "/admin/organizations",
    "/admin/users",
    "/admin/devices",
    "/admin/api-keys",
    "/admin/ingest-batches",
    "/admin/webhook-deliveries",
    "/admin/audit-log",
    "/admin/operators",
]


class TestLogin:
    async def test_session_cookie_flags(self, client: httpx.AsyncClient, staff: Staff) -> None:
        response = await submit_login(
            client, staff.operator.email, DEFAULT_PASSWORD, next="https://evil.example/"
        )

        assert response.status_code == 303
        assert response.headers["location"] == "/admin/"
        cookie = next(
            h
            for h in response.headers.get_list("set-cookie")
            if h.startswith("milepost_admin_session=")
        )
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie
        assert "Path=/admin" in cookie

    async def test_login_form_needs_its_csrf_token(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        await client.get("/admin/login")

        response = await client.post(
            "/admin/login",
            data={"email": staff.operator.email, "password": DEFAULT_PASSWORD, "csrf_token": "x"},
        )

        assert response.status_code == 403

    async def test_wrong_password_shows_the_form_again(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        response = await submit_login(client, staff.operator.email, "wrong wrong wrong")

        assert response.status_code == 401
        assert "Incorrect email or password" in response.text
        assert await audit_actions(session, action="auth.login_failed") == ["auth.login_failed"]

    async def test_too_many_wrong_passwords_show_the_form_with_retry_after(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        for _ in range(3):
            await submit_login(client, staff.operator.email, "wrong wrong wrong")

        response = await submit_login(client, staff.operator.email, DEFAULT_PASSWORD)

        assert response.status_code == 429
        assert "Too many failed login attempts" in response.text
        assert 0 < int(response.headers["Retry-After"]) <= 60

    async def test_pages_need_a_session(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/admin/organizations?q=x")

        assert response.status_code == 303
        assert response.headers["location"].startswith("/admin/login?next=/admin/organizations")

    async def test_after_logging_in_the_page_opens_with_its_whole_query(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        wanted = "/admin/organizations?q=north%20fleet&status=suspended"

        sent_away = await client.get(wanted)
        next_path = parse_qs(urlsplit(sent_away.headers["location"]).query)["next"][0]
        logged_in = await submit_login(
            client, staff.support.email, DEFAULT_PASSWORD, next=next_path
        )

        assert sent_away.status_code == 303
        assert logged_in.headers["location"] == wanted

    async def test_organization_user_cannot_log_in(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)

        response = await submit_login(client, user.email, DEFAULT_PASSWORD)

        assert response.status_code == 401

    async def test_logout_ends_the_session(self, client: httpx.AsyncClient, staff: Staff) -> None:
        console = await console_as(client, staff.support)

        response = await console.submit("/admin/logout")

        assert response.status_code == 303
        client.cookies.clear()
        assert (await client.get("/admin/")).status_code == 303


class TestPages:
    @pytest.mark.parametrize("path", PAGES)
    async def test_every_list_page_renders(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff, path: str
    ) -> None:
        org = await make_organization(session)
        await make_device(session, org)
        await make_user(session, org)
        await make_api_key(session, org)
        await log_in(client, staff.superadmin)

        response = await client.get(path)

        assert response.status_code == 200, response.text
        assert "Content-Security-Policy" in response.headers

    async def test_batch_page_shows_its_holder_and_lease(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        batch = IngestBatch(
            org_id=org.id,
            source=BatchSource.JSON,
            status=BatchStatus.PROCESSING,
            lease_holder="worker-1:4242:9f3c2a1b",
            lease_expires_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        )
        session.add(batch)
        await session.flush()
        await log_in(client, staff.support)

        response = await client.get(f"/admin/ingest-batches/{batch.id}")

        assert response.status_code == 200, response.text
        assert '<dd id="batch-lease-holder">worker-1:4242:9f3c2a1b</dd>' in response.text
        assert "2030-01-02 03:04:05Z" in response.text

    async def test_detail_pages_render(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        device = await make_device(session, org)
        user = await make_user(session, org)
        issued = await make_api_key(session, org)
        await log_in(client, staff.operator)

        for path in (
            f"/admin/organizations/{org.id}",
            f"/admin/devices/{device.id}",
            f"/admin/users/{user.id}",
            f"/admin/api-keys/{issued.api_key.id}",
        ):
            response = await client.get(path)
            assert response.status_code == 200, (path, response.text)
        assert issued.secret not in response.text

    async def test_tables_are_read_only(self, client: httpx.AsyncClient, staff: Staff) -> None:
        await log_in(client, staff.support)

        listing = await client.get("/admin/models/organization/list")
        create = await client.get("/admin/models/organization/create")

        assert listing.status_code == 200
        assert create.status_code in (403, 404)

    @pytest.mark.parametrize("view", tables.VIEWS, ids=lambda v: v.identity)
    async def test_no_table_takes_a_change_even_from_a_superadmin(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff, view: type
    ) -> None:
        """SQLAdmin keeps its create, edit, delete and import routes mounted: each must refuse
        (the change would skip audit, hashing and CSRF), whatever the operator's role."""
        org = await make_organization(session, name="Kept")
        await log_in(client, staff.superadmin)
        base = f"/admin/models/{view.identity}"
        form = {"name": "Changed", "platform_role": "superadmin"}
        csv = {"file": ("a.csv", b"name\nx\n", "text/csv")}

        answers = [
            await client.post(f"{base}/create", data=form),
            await client.post(f"{base}/edit/{org.id}", data=form),
            await client.delete(f"{base}/delete", params={"pks": str(org.id)}),
            await client.post(f"{base}/import", files=csv),
            await client.get(f"{base}/export/csv"),
        ]
        await session.refresh(org)

        assert [a.status_code for a in answers] == [403] * 5
        assert org.name == "Kept"

    @pytest.mark.parametrize("table", ["organization", "device", "alert", "audit-entry"])
    async def test_a_table_row_that_cannot_exist_is_the_console_404(
        self, client: httpx.AsyncClient, staff: Staff, table: str
    ) -> None:
        await log_in(client, staff.support)

        malformed = await client.get(f"/admin/models/{table}/details/not-an-id")
        missing = await client.get(f"/admin/models/{table}/details/{uuid.uuid4()}")

        assert malformed.status_code == 404
        assert malformed.headers["content-type"].startswith("text/html")
        assert "<h1>Not Found</h1>" in malformed.text
        assert missing.status_code == 404

    async def test_a_table_search_for_a_nul_finds_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        await log_in(client, staff.support)

        plain = await client.get("/admin/models/organization/list", params={"search": org.name})
        nul = await client.get("/admin/models/organization/list", params={"search": "\x00"})

        assert plain.status_code == 200
        assert org.name in plain.text
        assert nul.status_code == 200
        assert org.name not in nul.text


class TestActions:
    async def test_change_without_csrf_is_refused(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        await log_in(client, staff.operator)

        response = await client.post("/admin/organizations", data={"name": "No CSRF"})

        assert response.status_code == 403
        assert "reload and retry" in response.text

    async def test_every_change_refuses_a_session_without_its_csrf_token(
        self, admin_app: FastAPI, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        ids = await one_of_everything(session)
        await log_in(client, staff.superadmin)
        changes = [path for method, path, _ in console_routes(admin_app) if method == "POST"]

        answers = {
            path: await client.post(filled(path, ids), data={"name": "x"})
            for path in changes
            if path not in NO_SESSION_FORMS
        }

        assert len(answers) > 25
        accepted = {p: a.status_code for p, a in answers.items() if a.status_code != 403}
        assert not accepted, f"changes without the session's CSRF token: {accepted}"
        assert all("reload and retry" in a.text for a in answers.values())
        assert set(changes) >= NO_SESSION_FORMS

    async def test_support_cannot_change(self, client: httpx.AsyncClient, staff: Staff) -> None:
        console = await console_as(client, staff.support)

        response = await console.submit("/admin/organizations", {"name": "Support's"})

        assert response.status_code == 403

    async def test_operator_creates_and_suspends_an_organization(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        staff: Staff,
        operator_console: Console,
    ) -> None:
        created = await operator_console.submit("/admin/organizations", {"name": "Console Org"})
        assert created.status_code == 303
        org_url = created.headers["location"]
        suspended = await operator_console.submit(f"{org_url}/suspend")
        page = await client.get(org_url)

        assert suspended.status_code == 303
        assert "suspended" in page.text
        assert await audit_actions(session, actor_id=staff.operator.id) == [
            "auth.login",
            "organizations.create",
            "organizations.suspend",
        ]

    async def test_issued_key_secret_is_shown_once(
        self, client: httpx.AsyncClient, session: AsyncSession, operator_console: Console
    ) -> None:
        org = await make_organization(session)

        response = await operator_console.submit(
            f"/admin/organizations/{org.id}/api-keys", {"name": "Gateway", "scopes": "ingest"}
        )

        assert response.status_code == 303
        assert response.headers["location"] == "/admin/secret"
        shown = await client.get("/admin/secret")
        secret = re.search(r'id="secret-value">(mp_[A-Za-z0-9]+)<', shown.text)
        assert secret
        detail = await client.get(f"/admin/organizations/{org.id}")
        assert secret.group(1) not in detail.text
        again = await client.get("/admin/secret")
        assert secret.group(1) not in again.text


class TestErrorPages:
    async def test_a_console_route_answers_with_a_page_and_the_json_api_with_the_envelope(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        await log_in(client, staff.operator)
        missing = "00000000-0000-4000-8000-000000000000"

        page = await client.get(f"/admin/organizations/{missing}")
        api = await client.get(f"/admin/v1/organizations/{missing}", headers=staff.operator_auth)

        assert page.status_code == 404
        assert page.headers["content-type"].startswith("text/html")
        assert "not found" in page.text.lower()
        assert api.status_code == 404
        assert api.json()["error"]["code"] == "not_found"

    async def test_the_back_link_of_an_error_page_stays_in_the_console(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        # A page elsewhere links an operator to a console address that fails: the error
        # page's "Back" must not lead to that page (the console sends no Referer of its own).
        await log_in(client, staff.operator)

        for referer in ("https://evil.example/phish", "javascript:alert(1)"):
            page = await client.get("/admin/devices/not-an-id", headers={"Referer": referer})

            assert page.status_code == 422
            assert 'href="/admin/">← Back' in page.text

    @pytest.mark.parametrize(
        ("method", "path", "form"),
        [
            ("GET", "/admin/devices/not-an-id", {}),
            ("GET", "/admin/suggest/organizations", {"org_name": "o" * 201}),
            ("GET", "/admin/suggest/devices", {"device": "a\x00b"}),
            ("POST", "/admin/organizations/not-an-id/settings", {"name": "Acme"}),
            ("POST", "/admin/invitation", {"token": "t" * 600, "password": "x"}),
        ],
    )
    async def test_every_console_error_is_a_page_with_its_status_and_code(
        self, client: httpx.AsyncClient, staff: Staff, method: str, path: str, form: dict[str, str]
    ) -> None:
        # The framework's and the database's errors too (a malformed id or query, a NUL, a
        # field over its length), not only the domain's; a malformed id in a form's address
        # is not an error of the form, whose page could not be shown for it.
        console = await console_as(client, staff.operator)

        if method == "GET":
            answer = await client.get(path, params=form)
        else:
            answer = await console.submit(path, form)

        assert answer.status_code == 422
        assert answer.headers["content-type"].startswith("text/html")
        assert "<code>validation_failed</code>" in answer.text
        assert answer.headers["x-request-id"]

    async def test_an_error_nobody_expected_is_the_500_page_with_its_request_id(
        self,
        admin_app: FastAPI,
        client: httpx.AsyncClient,
        staff: Staff,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        async def broken(*_: object, **__: object) -> None:
            raise RuntimeError("a bug")

        await log_in(client, staff.operator)
        monkeypatch.setattr(organization_service, "list_organizations", broken)
        transport = httpx.ASGITransport(app=admin_app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", cookies=client.cookies
        ) as browser:
            page = await browser.get("/admin/organizations")
            api = await browser.get("/admin/v1/organizations", headers=staff.operator_auth)

        assert page.status_code == 500
        assert page.headers["content-type"].startswith("text/html")
        assert "<code>internal_error</code>" in page.text
        assert "a bug" not in page.text
        assert page.headers["x-request-id"]
        assert api.status_code == 500
        assert api.json()["error"]["trace_id"] == api.headers["x-request-id"]

    async def test_the_json_api_keeps_the_envelope_for_the_same_errors(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        answer = await client.get("/admin/v1/devices/not-an-id", headers=staff.operator_auth)

        assert answer.status_code == 422
        assert answer.json()["error"]["code"] == "validation_failed"

    async def test_operator_actions_are_routes_of_their_own(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        console = await console_as(client, staff.superadmin)

        unknown = await console.submit(f"/admin/operators/{staff.operator.id}/promote")
        deactivated = await console.submit(f"/admin/operators/{staff.operator.id}/deactivate")

        assert unknown.status_code == 404
        assert deactivated.status_code == 303
