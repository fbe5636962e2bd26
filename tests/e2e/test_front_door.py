"""A newcomer's first pages through the real gateway, in headless Chromium with no network
but loopback: the landing page, the API docs of every app, an invitation made in the console
and accepted in the account page, then a public API login with the new password."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, Route, expect, sync_playwright

from milepost_devstack.stack import Stack

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run"]
NEW_PASSWORD = "my own long passphrase"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.xdist_group("e2e"),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]


@dataclass
class Browser:
    context: BrowserContext
    # Every request the browser tried outside loopback (refused), and the console's errors.
    left_loopback: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def page(self) -> Page:
        tab = self.context.new_page()
        tab.set_default_timeout(15_000)
        tab.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        return tab


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        seen = Browser(context)

        def only_loopback(route: Route) -> None:
            host = urlsplit(route.request.url).hostname or ""
            if host == "localhost" or host.startswith("127."):
                route.continue_()
            else:
                seen.left_loopback.append(route.request.url)
                route.abort()

        context.route("**/*", only_loopback)
        try:
            yield seen
        finally:
            context.close()
            chromium.close()


DOCS = [
    ("/api/docs", "Log in with email and password"),
    ("/admin/docs", "Log in as an operator (OAuth2 password form)"),
    ("/ingest/docs", "Push a batch of positions"),
]


class TestDocs:
    @pytest.mark.parametrize(("path", "operation"), DOCS)
    def test_swagger_ui_shows_the_operations(
        self, stack: Stack, browser: Browser, path: str, operation: str
    ) -> None:
        page = browser.page()
        page.goto(stack.gateway_url + path)

        expect(page.locator(".opblock-summary-description", has_text=operation)).to_be_visible()
        assert page.locator(".opblock").count() > 5
        assert browser.left_loopback == []
        assert not [e for e in browser.errors if "Content Security Policy" in e]
        page.close()

    def test_redoc_shows_the_operations(self, stack: Stack, browser: Browser) -> None:
        page = browser.page()
        page.goto(stack.gateway_url + "/api/redoc")

        # ReDoc lays out the whole 400 KB document before the first operation shows: seconds
        # on a loaded 2-core machine (it missed expect's default 5 s once in CI).
        operation = page.get_by_role("heading", name="Log in with email and password")
        expect(operation).to_be_visible(timeout=30_000)
        assert browser.left_loopback == []
        page.close()


class TestFrontDoor:
    def test_landing_page_leads_to_the_docs(self, stack: Stack, browser: Browser) -> None:
        page = browser.page()
        page.goto(stack.gateway_url + "/")

        expect(page.get_by_role("heading", name="Milepost", exact=True)).to_be_visible()
        expect(page.get_by_role("link", name="Console")).to_have_attribute("href", "/admin/")
        page.get_by_role("link", name="Public API").click()
        expect(page).to_have_url(re.compile(r"/api/docs$"))
        page.close()

    def test_favicon_and_prefixes_answer(self, gateway: httpx.Client) -> None:
        favicon = gateway.get("/favicon.ico")
        api = gateway.get("/api/")
        ingest = gateway.get("/ingest/")

        assert (favicon.status_code, favicon.headers["content-type"]) == (200, "image/x-icon")
        assert api.json()["docs"] == "/api/docs"
        assert ingest.json()["docs"] == "/ingest/docs"
        assert gateway.get("/robots.txt").status_code == 404

    def test_an_unknown_console_page_is_the_consoles_404(
        self, stack: Stack, browser: Browser
    ) -> None:
        page = browser.page()
        response = page.goto(stack.gateway_url + "/admin/no-such-page")

        assert response is not None
        assert response.status == 404
        expect(page.get_by_text("There is no such page in the console.")).to_be_visible()
        page.close()


class TestInvitation:
    def test_invited_in_the_console_accepted_in_the_page(
        self, stack: Stack, gateway: httpx.Client, browser: Browser
    ) -> None:
        credentials = stack.credentials()
        email = f"invited-{uuid.uuid4().hex[:8]}@example.com"
        page = browser.page()

        page.goto(stack.gateway_url + "/admin/login")
        page.get_by_label("Email").fill(credentials.operator_email)
        page.get_by_label("Password").fill(credentials.operator_password)
        page.get_by_role("button", name="Log in").click()
        page.goto(stack.gateway_url + "/admin/organizations")
        page.get_by_text("New organization").click()
        page.get_by_label("Name").fill(f"Invitations {uuid.uuid4().hex[:6]}")
        page.get_by_role("button", name="Create organization").click()
        user_form = page.get_by_role("form", name="New user")
        user_form.get_by_label("Email").fill(email)
        user_form.get_by_label("Role").select_option("viewer")
        user_form.get_by_role("button", name="Create user").click()
        expect(page.get_by_text("/api/account/invitation#token=")).to_be_visible()
        match = re.search(r"http://[^\s\"<]+/api/account/invitation#token=[\w.-]+", page.content())
        assert match is not None
        link = match.group(0)

        page.goto(link)
        page.get_by_label("New password").fill(NEW_PASSWORD)
        page.get_by_label("Repeat the password").fill(NEW_PASSWORD)
        page.get_by_role("button", name="Set password").click()
        expect(page.get_by_text("Done: your password is set")).to_be_visible()
        expect(page.get_by_text("Now log in with your app")).to_be_visible()

        login = gateway.post(
            "/api/v1/auth/token", data={"username": email, "password": NEW_PASSWORD}
        )
        assert login.status_code == 200, login.text
        assert login.json()["token_type"] == "bearer"

        # The link works once: opened again, it says so.
        page.goto("about:blank")
        page.goto(link)
        page.get_by_label("New password").fill(NEW_PASSWORD)
        page.get_by_label("Repeat the password").fill(NEW_PASSWORD)
        page.get_by_role("button", name="Set password").click()
        expect(page.get_by_role("heading", name="This link cannot be used")).to_be_visible()
        assert browser.left_loopback == []
        page.close()
