"""The console's lists, forms and tables in headless Chromium, against the admin app served
by uvicorn over a committed database: 200-character names never widen the page (cut with
the full name on hover), the dashboard's charts span the page, a form error is shown beside
its field with the input kept, a key's secret is gone on reload (one key stored), an
organization is found by name with suggestions, OsmAnd fixes are summed up per device
with the failed batch one click away, the read-only tables wear the console, and a request
of the page's own that fails (an error, the console gone) says the page was not updated."""

from __future__ import annotations

import os
import re
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from browser import test_journey as browser
from browser.test_map import _in_transaction, run
from playwright.sync_api import Page, expect
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_admin.settings import AdminSettings
from milepost_common.domain.api_keys.models import ApiKey
from milepost_common.domain.ingest_batches.models import BatchSource, BatchStatus, IngestBatch
from milepost_common.testing.factories import make_device, make_organization

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(browser.CHROMIUM), reason="no Debian chromium"),
]
page = browser.page  # Chromium with the journey test's options
SHOTS = browser.ARTIFACTS


@dataclass(frozen=True)
class Seeded:
    long_org_id: uuid.UUID
    long_org_name: str
    long_device_name: str
    tag: str
    taken_unique_id: str
    failed_batch_id: uuid.UUID


async def seed(session: AsyncSession) -> Seeded:
    tag = uuid.uuid4().hex[:6]
    org_name = (f"Long Haul Logistics {tag} " + "and Partners " * 20)[:200]
    device_name = ("Refrigerated articulated lorry " * 10)[:200]
    org = await make_organization(session, name=org_name)
    lorry = await make_device(session, org, name=device_name, unique_id=f"lorry-{tag}")
    phone = await make_device(session, org, name=f"Courier phone {tag}")
    await make_organization(session, name=f"Suggestible Freight {tag}")
    now = datetime.now(UTC)
    batches = [
        IngestBatch(
            org_id=org.id,
            source=BatchSource.OSMAND,
            status=BatchStatus.FAILED if minutes == 3 else BatchStatus.PROCESSED,
            accepted=1,
            device_ids=[str(phone.id)],
            received_at=now - timedelta(minutes=minutes),
            last_error="worker lost" if minutes == 3 else None,
        )
        for minutes in range(1, 6)
    ]
    batches.append(
        IngestBatch(
            org_id=org.id,
            source=BatchSource.JSON,
            status=BatchStatus.PROCESSED,
            accepted=1,
            device_ids=[str(lorry.id)],
            received_at=now - timedelta(minutes=7),
        )
    )
    session.add_all(batches)
    await session.flush()
    failed = next(b for b in batches if b.status == BatchStatus.FAILED)
    return Seeded(org.id, org_name, device_name, tag, lorry.unique_id, failed.id)


async def count_keys(session: AsyncSession, org_id: uuid.UUID) -> int:
    query = select(func.count()).select_from(ApiKey).where(ApiKey.org_id == org_id)  # type: ignore[arg-type]
    return int(await session.scalar(query) or 0)


@pytest.fixture
def console_stack(
    committed_database: str, redis_url: str, settings_factory: Any
) -> Iterator[dict[str, str]]:
    """The admin app alone, on a free loopback port."""
    settings: AdminSettings = settings_factory(AdminSettings)
    with browser.serving_admin(
        committed_database, settings, MILEPOST_ADMIN__MAP_TILE_URL=""
    ) as stack:
        yield stack


def assert_fits(tab: Page, shot: str) -> None:
    """Nothing on the page is wider than the window: wide tables scroll in their box."""
    widths = tab.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    tab.screenshot(path=str(SHOTS / f"console-{shot}.png"), full_page=True)
    assert widths[0] <= widths[1], (shot, widths)


def test_console_lists_forms_and_tables(console_stack: dict[str, str], page: Page) -> None:
    seeded: Seeded = run(_in_transaction(console_stack["database"], seed))
    admin = console_stack["admin"]
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    browser.log_in(page, f"{admin}/admin/")
    expect(page.get_by_role("heading", name="System status")).to_be_visible()

    # The dashboard's charts span the page, their axes labelled.
    content = page.evaluate(
        "() => { const m = document.querySelector('main'); const s = getComputedStyle(m);"
        " return m.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight); }"
    )
    for chart in ("#chart-rate svg", "#chart-lag svg"):
        width = page.locator(chart).bounding_box()["width"]  # type: ignore[index]
        assert width >= 0.8 * content, (chart, width, content)
    expect(page.locator("#chart-rate .axis-label")).to_have_text(
        ["Time (UTC)", "Ingest rate (positions/min)"]
    )
    assert_fits(page, "dashboard")

    # 200-character names are cut in lists, whole on hover; the page never gets wider.
    page.goto(f"{admin}/admin/organizations?q={seeded.tag}")
    name = page.locator(f'#results a.clip[title="{seeded.long_org_name}"]')
    expect(name).to_be_visible()
    assert name.evaluate("e => e.scrollWidth > e.clientWidth")
    assert_fits(page, "organizations-long-name")
    name.click()
    expect(page.locator("h1")).to_contain_text(seeded.long_org_name)
    assert_fits(page, "organization-long-name")
    org_url = page.url
    page.goto(f"{admin}/admin/devices?org_id={seeded.long_org_id}")
    expect(page.locator(f'#results span.clip[title="{seeded.long_device_name}"]')).to_be_visible()
    assert_fits(page, "devices-long-name")

    # Found by organization name, with suggestions; sorted by a column.
    page.goto(f"{admin}/admin/devices")
    box = page.get_by_role("combobox", name="Organization")
    box.press_sequentially(f"suggestible freight {seeded.tag}"[:14], delay=20)
    expect(page.locator("#org-options option").first).to_have_attribute(
        "value", re.compile("Suggestible Freight")
    )
    box.fill(f"long haul logistics {seeded.tag}")
    box.press("Enter")
    expect(page).to_have_url(re.compile(r"org_name=long"))
    expect(page.locator("#results tbody tr")).to_have_count(2)
    page.get_by_role("link", name="Name", exact=True).click()
    expect(page.locator("th[aria-sort='ascending']")).to_have_text("Name ↑")
    expect(page.locator("#results tbody tr").first).to_contain_text("Courier phone")

    # OsmAnd fixes summed up per device; the failed one is a click away.
    page.goto(f"{admin}/admin/ingest-batches?org_id={seeded.long_org_id}")
    phone_row = page.locator("#osmand-devices tbody tr", has_text="Courier phone")
    expect(phone_row.locator("td.num").first).to_have_text("5")
    expect(page.locator("#batches tbody tr")).to_have_count(1)
    assert_fits(page, "batches-grouped")
    phone_row.get_by_role("link", name="latest failed batch").click()
    expect(page).to_have_url(re.compile(str(seeded.failed_batch_id)))
    expect(page.locator("h1 .badge")).to_have_text("failed")

    # A form's error beside its field, the input kept.
    page.goto(f"{admin}/admin/organizations")
    page.get_by_text("New organization").click()
    new_org = page.get_by_role("form", name="New organization")
    new_org.get_by_label("Name").fill(f"Mars Freight {seeded.tag}")
    new_org.get_by_label("Time zone").fill("Mars/Olympus")
    new_org.get_by_role("button", name="Create organization").click()
    expect(page.locator("#new-organization-timezone-error")).to_have_text("not an IANA time zone")
    expect(new_org.get_by_label("Name")).to_have_value(f"Mars Freight {seeded.tag}")
    expect(new_org.get_by_label("Time zone")).to_have_value("Mars/Olympus")
    assert_fits(page, "form-error-time-zone")

    page.goto(org_url)
    device_form = page.get_by_role("form", name="New device")
    device_form.get_by_label("Unique id").fill(seeded.taken_unique_id)
    device_form.get_by_label("Name").fill("Second lorry")
    device_form.get_by_role("button", name="Register device").click()
    error = page.locator("#new-device-unique_id-error")
    expect(error).to_have_text("A device with this unique_id already exists.")
    expect(error).to_be_in_viewport()
    expect(device_form.get_by_label("Name")).to_have_value("Second lorry")
    page.screenshot(path=str(SHOTS / "console-form-error-device.png"))

    user_form = page.get_by_role("form", name="New user")
    user_form.get_by_label("Email").fill("dispatcher@fleet")
    user_form.get_by_label("Role").select_option("manager")
    user_form.get_by_role("button", name="Create user").click()
    expect(page.locator("#new-user-email-error")).to_be_visible()
    expect(user_form.get_by_label("Email")).to_have_value("dispatcher@fleet")
    expect(user_form.get_by_label("Role")).to_have_value("manager")

    # A key's secret once: a reload neither shows it again nor issues another key.
    page.goto(org_url)
    key_form = page.get_by_role("form", name="Issue API key")
    key_form.get_by_label("Key name").fill("Gateway")
    key_form.get_by_role("button", name="Issue API key").click()
    secret = page.locator("#secret-value").inner_text().strip()
    assert secret.startswith("mp_")
    page.reload()
    expect(page.locator("#secret-gone")).to_be_visible()
    assert secret not in page.content()
    page.go_back()
    expect(page.locator("h1")).to_contain_text(seeded.long_org_name)
    assert secret not in page.content()

    async def keys(session: AsyncSession) -> int:
        return await count_keys(session, seeded.long_org_id)

    assert run(_in_transaction(console_stack["database"], keys)) == 1

    # A request of the page's own that fails says so, and the next that succeeds clears it
    # (here the suggestions, asked for a name longer than any: a 422 from the console).
    page.goto(f"{admin}/admin/devices")
    problem = page.locator("#load-problem")
    expect(problem).to_be_hidden()
    page.evaluate(
        "() => htmx.ajax('GET', '/admin/suggest/organizations?org_name=' + 'x'.repeat(201),"
        " {target: '#org-options', swap: 'innerHTML'})"
    )
    expect(problem).to_have_text(
        "Not updated: The request is not valid (422). What you see is from before."
    )
    page.get_by_role("combobox", name="Organization").press_sequentially("long", delay=20)
    expect(problem).to_be_hidden()

    # The read-only tables: the console's bar and look, names beside ids, a way back.
    page.goto(org_url)
    page.get_by_role("link", name="Tables").click()
    expect(page.get_by_role("heading", name="Tables read-only")).to_be_visible()
    page.get_by_role("link", name="Devices", exact=True).last.click()
    page.get_by_role("searchbox", name="Search").fill(seeded.taken_unique_id)
    page.get_by_role("button", name="Search").click()
    org_cell = page.locator(f'#table-rows a.clip[title="{seeded.long_org_name}"]')
    expect(org_cell).to_have_attribute("href", f"/admin/organizations/{seeded.long_org_id}")
    expect(page.get_by_text("Actions")).to_have_count(0)
    assert_fits(page, "tables-devices")
    page.get_by_role("link", name="View").first.click()
    expect(page.locator("#row-details")).to_contain_text(seeded.long_org_name)
    assert_fits(page, "tables-device-details")
    page.get_by_role("link", name="← Console").click()
    expect(page.get_by_role("heading", name="System status")).to_be_visible()
    assert errors == []

    # The console gone (a restart, a network cut): a filter typed then says it did nothing.
    page.goto(f"{admin}/admin/devices")
    os.kill(int(console_stack["pid"]), signal.SIGTERM)
    refused_within(admin, seconds=30)
    page.get_by_role("combobox", name="Organization").press_sequentially("gone", delay=20)
    expect(problem).to_have_text(
        "Not updated: the console cannot be reached. What you see is from before."
    )


def refused_within(url: str, *, seconds: float) -> None:
    """Wait until the server at ``url`` refuses connections."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
        except httpx.ConnectError:
            return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} still answers after {seconds} s")
