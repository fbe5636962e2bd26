"""The operator's journey in headless Chromium, against the admin and ingest apps served
by uvicorn on loopback ports over a committed database."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Dialog, Page, expect, sync_playwright
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from milepost_admin.settings import AdminSettings
from milepost_common.testing.factories import DEFAULT_PASSWORD

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(os.environ.get("MILEPOST_TEST_ARTIFACTS", "test-artifacts"))
OPERATOR_EMAIL = "journey-operator@example.com"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(code: str, env: dict[str, str], port: int, name: str) -> subprocess.Popen[bytes]:
    log = ARTIFACTS / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    # Generous: on a loaded 2-core machine (the other xdist worker busy) an app's imports
    # alone can take tens of seconds; what is tested here is the journey, not start-up time.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited; see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/{name}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{name} did not start; see {log}")


async def _seed_operator(url: str) -> None:
    from milepost_common.testing.factories import make_operator

    engine = create_async_engine(url, poolclass=NullPool)
    try:
        from sqlalchemy.ext.asyncio import AsyncSession

        async with AsyncSession(engine) as session, session.begin():
            await make_operator(session, email=OPERATOR_EMAIL)
    finally:
        await engine.dispose()


async def _count_positions(url: str, unique_id: str) -> int:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            value = await conn.scalar(
                text(
                    "SELECT count(*) FROM positions p JOIN devices d ON d.id = p.device_id "
                    "WHERE d.unique_id = :u"
                ),
                {"u": unique_id},
            )
            return int(value or 0)
    finally:
        await engine.dispose()


def _environment(database: str, settings: AdminSettings) -> dict[str, str]:
    """What an app served over the committed database is started with (cheap hashes)."""
    return {
        **os.environ,
        "MILEPOST_ENV": "test",
        "MILEPOST_LOG_LEVEL": "WARNING",
        "MILEPOST_DB__URL": database,
        "MILEPOST_REDIS__URL": settings.redis.url,
        "MILEPOST_REDIS__CACHE_DB": str(settings.redis.cache_db),
        "MILEPOST_AUTH__ARGON2_TIME_COST": "1",
        "MILEPOST_AUTH__ARGON2_MEMORY_KIB": "64",
    }


@contextmanager
def serving_admin(database: str, settings: AdminSettings, **env: str) -> Iterator[dict[str, str]]:
    """The admin app alone on a free loopback port over the committed database, its
    operator seeded; ``env`` added to its environment."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    asyncio.run(_seed_operator(database))
    port = _free_port()
    env = {**_environment(database, settings), "MILEPOST_ADMIN__PORT": str(port), **env}
    admin = _serve("from milepost_admin.main import serve; serve()", env, port, "admin")
    try:
        yield {"admin": f"http://127.0.0.1:{port}", "database": database, "pid": str(admin.pid)}
    finally:
        admin.terminate()
        admin.wait(10)


def log_in(page: Page, url: str) -> None:
    """Open ``url`` of the console, which leads to its login, and log in as the operator."""
    page.goto(url)
    expect(page).to_have_url(re.compile(r"/admin/login"))
    page.get_by_label("Email").fill(OPERATOR_EMAIL)
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Log in").click()


@pytest.fixture
def stack(
    committed_database: str,
    redis_url: str,
    settings_factory: Callable[..., AdminSettings],
) -> Iterator[dict[str, str]]:
    """The admin and ingest apps on free loopback ports, sharing the committed database."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    asyncio.run(_seed_operator(committed_database))
    settings = settings_factory(AdminSettings)
    admin_port, ingest_port = _free_port(), _free_port()
    env = {
        **_environment(committed_database, settings),
        "MILEPOST_ADMIN__PORT": str(admin_port),
        "MILEPOST_INGEST__PORT": str(ingest_port),
    }
    admin = _serve("from milepost_admin.main import serve; serve()", env, admin_port, "admin")
    try:
        ingest = _serve(
            "from milepost_ingest.main import serve; serve()", env, ingest_port, "ingest"
        )
        try:
            yield {
                "admin": f"http://127.0.0.1:{admin_port}",
                "ingest": f"http://127.0.0.1:{ingest_port}",
                "database": committed_database,
            }
        finally:
            ingest.terminate()
            ingest.wait(10)
    finally:
        admin.terminate()
        admin.wait(10)


@pytest.fixture
def page(request: pytest.FixtureRequest) -> Iterator[Page]:
    """A Chromium page; on a failed test, a screenshot of where it was."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1366, "height": 768})
        tab = context.new_page()
        tab.on("dialog", lambda dialog: Dialog.accept(dialog))
        tab.set_default_timeout(10_000)
        failed_before = request.session.testsfailed
        try:
            yield tab
        finally:
            if request.session.testsfailed > failed_before or getattr(
                request.node, "failed", False
            ):
                tab.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
            context.close()
            browser.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" and report.failed:
        item.failed = True  # type: ignore[attr-defined]


def test_operator_journey(stack: dict[str, str], page: Page) -> None:
    admin = stack["admin"]
    marker = uuid.uuid4().hex[:6]
    org_name = f"Journey Fleet {marker}"
    known, unknown = f"known-{marker}", f"unknown-{marker}"

    # Log in.
    log_in(page, f"{admin}/admin/")
    expect(page.get_by_role("heading", name="System status")).to_be_visible()

    # Create an organization, a user and a device.
    page.get_by_role("link", name="Organizations").click()
    page.get_by_text("New organization").click()
    page.get_by_label("Name").fill(org_name)
    page.get_by_role("button", name="Create organization").click()
    expect(page.get_by_role("heading", name=org_name)).to_be_visible()
    org_url = page.url

    user_form = page.get_by_role("form", name="New user")
    user_form.get_by_label("Email").fill(f"dispatcher-{marker}@example.com")
    user_form.get_by_label("Role").select_option("manager")
    user_form.get_by_label("Password").fill("a long dispatcher password")
    user_form.get_by_role("button", name="Create user").click()
    expect(page.get_by_text(f"User dispatcher-{marker}@example.com created.")).to_be_visible()

    page.goto(org_url)
    device_form = page.get_by_role("form", name="New device")
    device_form.get_by_label("Unique id").fill(known)
    device_form.get_by_label("Name").fill("Van 1")
    device_form.get_by_role("button", name="Register device").click()
    expect(page.get_by_text(f"Device {known} registered.")).to_be_visible()

    # Issue an API key: its secret is shown once.
    page.goto(org_url)
    key_form = page.get_by_role("form", name="Issue API key")
    key_form.get_by_label("Key name").fill("Gateway")
    key_form.get_by_role("button", name="Issue API key").click()
    secret = page.locator("#secret-value").inner_text().strip()
    assert secret.startswith("mp_")
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    page.get_by_role("link", name="Done →").click()
    assert secret not in page.content()

    # Push a batch with an unknown device through ingest.
    fix = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    pushed = httpx.post(
        f"{stack['ingest']}/ingest/v1/positions",
        json={
            "positions": [
                {"device_id": known, "fix_time": fix, "lat": 52.52, "lon": 13.40},
                {"device_id": unknown, "fix_time": fix, "lat": 52.53, "lon": 13.41},
            ]
        },
        headers={"Authorization": f"Bearer {secret}"},
        timeout=10,
    )
    assert pushed.status_code == 202, pushed.text
    assert pushed.json()["rejected"] == 1
    batch_id = pushed.json()["batch_id"]

    # Find the rejected item in the batch detail.
    page.get_by_role("link", name="Ingest batches").click()
    page.locator(f'a[href="/admin/ingest-batches/{batch_id}"]').click()
    rejected = page.locator("#rejected-items")
    expect(rejected).to_contain_text("unknown_device")
    expect(rejected).to_contain_text(unknown)

    # Register the device, replay the batch, see the item stored.
    page.goto(org_url)
    device_form = page.get_by_role("form", name="New device")
    device_form.get_by_label("Unique id").fill(unknown)
    device_form.get_by_label("Name").fill("Van 2")
    device_form.get_by_role("button", name="Register device").click()
    expect(page.get_by_text(f"Device {unknown} registered.")).to_be_visible()
    page.goto(f"{admin}/admin/ingest-batches/{batch_id}")
    page.get_by_role("button", name="Replay batch").click()
    expect(page.get_by_text("1 item(s) stored now, 0 still rejected")).to_be_visible()
    expect(page.locator("#batch-counts")).to_contain_text("2 accepted, 0 rejected")
    expect(page.locator("#rejected-items")).to_contain_text("No rejected item kept.")
    # Playwright's sync API holds this thread's event loop: query from another thread.
    with ThreadPoolExecutor(1) as pool:
        stored = pool.submit(asyncio.run, _count_positions(stack["database"], unknown)).result()
    assert stored == 1

    # All of it is in the audit log.
    page.get_by_role("link", name="Audit log").click()
    entries = page.locator("#audit-entries")
    for action in (
        "auth.login",
        "organizations.create",
        "users.create",
        "devices.register",
        "api_keys.issue",
        "ingest_batches.replay",
    ):
        expect(entries).to_contain_text(action)

    # Log out.
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/admin/login"))
    page.goto(f"{admin}/admin/organizations")
    expect(page).to_have_url(re.compile(r"/admin/login"))
