"""The console's map in headless Chromium, against the admin app served by uvicorn over a
committed database, with no tiles: the fleet's markers appear and one moves when a newer
latest position is stored, a trip of a chosen day is drawn with its stops, an alert is
pinned, a device's page shows its marker and links to the map with it chosen, and the CSP
refuses nothing."""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from browser import test_journey as browser
from playwright.sync_api import ConsoleMessage, Page, expect
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from milepost_admin.settings import AdminSettings
from milepost_common.domain.alerts.models import AlertType
from milepost_common.domain.devices import state as device_state
from milepost_common.domain.devices.models import Device
from milepost_common.testing.factories import (
    make_alert,
    make_alert_rule,
    make_device,
    make_organization,
    make_position,
    make_stop,
    make_trip,
)

T = TypeVar("T")
BERLIN = ZoneInfo("Europe/Berlin")
TIMEOUT_MS = 20_000  # the machine is shared: generous
START = {"Van 1": (52.520, 13.400), "Van 2": (52.500, 13.350), "Van 3": (52.540, 13.450)}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(browser.CHROMIUM), reason="no Debian chromium"),
]
page = browser.page  # Chromium with the journey test's options


@dataclass(frozen=True)
class Fleet:
    org_id: uuid.UUID
    vans: dict[str, uuid.UUID]
    day: date


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run database work from a test: Playwright's sync API holds this thread's loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _in_transaction(url: str, work: Any) -> Any:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
            return await work(session)
    finally:
        await engine.dispose()


async def _store_fix(
    session: AsyncSession, device: Device, at: datetime, lat: float, lon: float, speed: float
) -> None:
    """A fix and the device's latest position, as the worker stores them."""
    await make_position(session, device, at, lat=lat, lon=lon, speed=speed, course=45.0)
    states = await device_state.lock_device_states(session, {device.id: device.org_id})
    values = {"lat": lat, "lon": lon, "speed": speed, "course": 45.0}
    assert device_state.record_position(states[device.id], at, values)


async def seed_fleet(session: AsyncSession) -> Fleet:
    """Three vans online; Van 2 drove yesterday (a trip between two stops); Van 1 sped."""
    org = await make_organization(session, name="Map Fleet", timezone="Europe/Berlin")
    now = datetime.now(UTC)
    vans: dict[str, Device] = {}
    for n, (name, (lat, lon)) in enumerate(START.items(), 1):
        vans[name] = await make_device(session, org, name=name)
        await _store_fix(session, vans[name], now - timedelta(minutes=n), lat, lon, 30.0 * n)
    day = datetime.now(BERLIN).date() - timedelta(days=1)
    start = datetime.combine(day, time(9), tzinfo=BERLIN)
    end = start + timedelta(minutes=20)
    for i in range(5):  # a zigzag: Leaflet draws every corner
        at = start + timedelta(minutes=5 * i)
        await make_position(
            session, vans["Van 2"], at, lat=52.46 + i % 2 / 100, lon=13.30 + i / 100
        )
    van_2, van_1 = vans["Van 2"], vans["Van 1"]
    drive = {"distance_m": 2700.0, "duration_s": 1200.0, "avg_speed": 8.1, "max_speed": 31.0}
    here, there = {"lat": 52.46, "lon": 13.30}, {"lat": 52.46, "lon": 13.34}
    ends = {"start_lat": 52.46, "start_lon": 13.30, "end_lat": 52.46, "end_lon": 13.34}
    await make_trip(session, van_2, start, end, **ends, **drive)
    night = start - timedelta(hours=12)
    await make_stop(session, van_2, night, start, **here, duration_s=43200.0)
    await make_stop(session, van_2, end, end + timedelta(hours=2), **there, duration_s=7200.0)
    rule = await make_alert_rule(session, org.id, AlertType.OVERSPEED, name="Fast")
    speeding = {"lat": 52.51, "lon": 13.38, "details": {"speed": 96.0, "limit_kmh": 50.0}}
    await make_alert(session, van_1, now - timedelta(hours=1), rule, **speeding)
    return Fleet(org.id, {name: device.id for name, device in vans.items()}, day)


def move(url: str, device_id: uuid.UUID, lat: float, lon: float) -> None:
    async def work(session: AsyncSession) -> None:
        device = await session.get(Device, device_id)
        assert device is not None
        await _store_fix(session, device, datetime.now(UTC), lat, lon, 55.0)

    run(_in_transaction(url, work))


@pytest.fixture
def map_stack(
    committed_database: str, redis_url: str, settings_factory: Any
) -> Iterator[dict[str, str]]:
    """The admin app alone, without tiles and polling every second."""
    settings: AdminSettings = settings_factory(AdminSettings)
    no_tiles = {"MILEPOST_ADMIN__MAP_TILE_URL": "", "MILEPOST_ADMIN__MAP_POLL_S": "1"}
    with browser.serving_admin(committed_database, settings, **no_tiles) as stack:
        yield stack


def test_the_fleet_moves_and_a_trip_is_drawn(map_stack: dict[str, str], page: Page) -> None:
    fleet: Fleet = run(_in_transaction(map_stack["database"], seed_fleet))
    refused: list[str] = []

    def watch(message: ConsoleMessage) -> None:
        where = message.location.get("url", "")
        # Served at the root by the gateway's landing router, not by this app.
        if message.type == "error" and not where.endswith("/favicon.ico"):
            refused.append(f"{message.text} ({where})")

    page.on("console", watch)
    page.on("pageerror", lambda error: refused.append(str(error)))
    page.set_default_timeout(TIMEOUT_MS)

    # The map is behind the console's login, which comes back to it.
    map_url = f"{map_stack['admin']}/admin/organizations/{fleet.org_id}/map"
    browser.log_in(page, map_url)
    expect(page).to_have_url(map_url, timeout=TIMEOUT_MS)

    # A marker per van, labelled with its name and speed, coloured by its status.
    markers = page.locator(".leaflet-marker-icon.vehicle-marker")
    expect(markers).to_have_count(3, timeout=TIMEOUT_MS)
    labels = page.locator(".leaflet-tooltip.vehicle-label")
    expect(labels).to_have_count(3)
    expect(labels.filter(has_text="Van 3")).to_contain_text("90 km/h")
    van = page.locator(f'.vehicle-marker[data-vehicle-id="{fleet.vans["Van 1"]}"]')
    expect(van).to_have_attribute("data-status", "online")
    expect(van).to_have_class(re.compile(r"\bstatus-online\b"))
    expect(page.locator("#map-vehicles li")).to_have_count(3)
    page.screenshot(path=str(browser.ARTIFACTS / "admin-map-fleet.png"))

    # A newer latest position moves the marker on the next poll.
    was = van.get_attribute("style")
    move(map_stack["database"], fleet.vans["Van 1"], 52.560, 13.500)
    expect(van).to_have_attribute("data-lat", "52.56", timeout=TIMEOUT_MS)
    expect(van).to_have_attribute("data-lon", "13.5")
    assert van.get_attribute("style") != was
    expect(labels.filter(has_text="Van 1")).to_contain_text("55 km/h")

    # The alert of the last hour is a pin.
    expect(page.locator(".leaflet-marker-icon.alert-pin")).to_have_count(1, timeout=TIMEOUT_MS)
    expect(page.locator("#map-alerts")).to_contain_text("Overspeed")

    # Van 2's trip of yesterday: a line through its five fixes, its two stops.
    page.locator("#map-vehicle").select_option(label="Van 2")
    page.locator("#map-day").fill(fleet.day.isoformat())
    page.get_by_role("button", name="Show trips").click()
    lines = page.locator("path.trip-line")
    expect(lines).to_have_count(1, timeout=TIMEOUT_MS)
    route = lines.first.get_attribute("d") or ""
    assert len(re.findall(r"[ML]", route)) == 5, route
    expect(page.locator("path.stop-point")).to_have_count(2)
    expect(page.locator("#day-summary")).to_contain_text("1 trip(s), 2.7 km, 2 stop(s)")
    expect(page.locator(f'.vehicle-marker[data-vehicle-id="{fleet.vans["Van 2"]}"]')).to_have_class(
        re.compile(r"\bselected\b")
    )

    page.screenshot(path=str(browser.ARTIFACTS / "admin-map-trip.png"))

    # A vehicle's own page: its last position on a small map, and a link to the fleet map
    # with the vehicle chosen.
    van_3 = fleet.vans["Van 3"]
    page.goto(f"{map_stack['admin']}/admin/devices/{van_3}")
    expect(page.locator("#device-status")).to_have_text("online")
    own = page.locator(f'#device-map .vehicle-marker[data-vehicle-id="{van_3}"]')
    expect(own).to_have_class(re.compile(r"\bstatus-online\b"))
    expect(page.locator("#device-map .leaflet-tooltip.vehicle-label")).to_have_text("Van 3")
    page.get_by_role("link", name="On the fleet map").click()
    expect(page.locator("#map-vehicle")).to_have_value(str(van_3), timeout=TIMEOUT_MS)
    expect(page.locator(f'#fleet-map .vehicle-marker[data-vehicle-id="{van_3}"]')).to_have_class(
        re.compile(r"\bselected\b")
    )
    assert refused == []
