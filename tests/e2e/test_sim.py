"""`make demo` and the fleet simulator against the stack `make up` starts, through Traefik.

The demo is set up the way `make demo` does it (state directory and gateway port from the
environment, the operator from the stack's secrets.env); the simulator pushes live fixes as
gateways and phones do, and the public API must then hold each of them exactly once.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from milepost_devstack.stack import Stack
from milepost_sim import cli, demo
from milepost_sim.cli import WORKDAY
from milepost_sim.fleet import Fleet, fleet_specs
from milepost_sim.push import Pusher
from milepost_sim.runner import backfill, run_live, yesterday

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

VEHICLES = 4


@pytest.fixture(scope="module")
def environ(stack: Stack) -> dict[str, str]:
    """What `make demo` reads: make up's state directory and gateway port."""
    return {
        "MILEPOST_STATE_DIR": str(stack.config.state_dir),
        "MILEPOST_GATEWAY_PORT": str(stack.config.ports.gateway),
    }


@pytest.fixture(scope="module")
def settings(environ: dict[str, str]) -> demo.DemoSettings:
    return demo.settings_from_environ(environ, operator=True, vehicles=VEHICLES, rate=4.0)


@pytest.fixture(scope="module")
def state(settings: demo.DemoSettings) -> demo.DemoState:
    return demo.setup(settings)


@pytest.fixture(scope="module")
def owner(gateway: httpx.Client, state: demo.DemoState) -> dict[str, str]:
    login = {"username": demo.OWNER_EMAIL, "password": state.owner_password}
    token = gateway.post("/api/v1/auth/token", data=login).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def operator_headers(stack: Stack, gateway: httpx.Client) -> dict[str, str]:
    credentials = stack.credentials()
    login = {"username": credentials.operator_email, "password": credentials.operator_password}
    token = gateway.post("/admin/v1/auth/token", data=login).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def active_keys(gateway: httpx.Client, headers: dict[str, str], org_id: str) -> list[str]:
    url = f"/admin/v1/organizations/{org_id}/api-keys"
    page = gateway.get(url, params={"status": "active"}, headers=headers).json()
    return [key["id"] for key in page["items"]]


class TestDemoSetup:
    def test_a_second_run_reuses_everything(
        self, stack: Stack, gateway: httpx.Client, settings: demo.DemoSettings
    ) -> None:
        first = demo.setup(settings)
        second = demo.setup(settings)

        assert second == first
        assert sorted(first.device_ids) == [s.unique_id for s in fleet_specs(VEHICLES)]
        assert len(first.rule_ids) == len(demo.RULES)
        headers = operator_headers(stack, gateway)
        orgs = gateway.get(
            "/admin/v1/organizations", params={"q": demo.ORG_NAME}, headers=headers
        ).json()["items"]
        assert [org["id"] for org in orgs] == [first.org_id]
        assert active_keys(gateway, headers, first.org_id) == [first.api_key_id]
        assert stat.S_IMODE(os.stat(settings.state_file).st_mode) == 0o600

    def test_a_lost_state_file_rotates_the_key_and_resets_the_password(
        self, stack: Stack, gateway: httpx.Client, settings: demo.DemoSettings
    ) -> None:
        before = demo.setup(settings)
        settings.state_file.unlink()

        after = demo.setup(settings)

        assert (after.org_id, after.device_ids) == (before.org_id, before.device_ids)
        assert after.api_key != before.api_key
        headers = operator_headers(stack, gateway)
        assert active_keys(gateway, headers, after.org_id) == [after.api_key_id]
        login = {"username": demo.OWNER_EMAIL, "password": after.owner_password}
        assert gateway.post("/api/v1/auth/token", data=login).status_code == 200

    def test_a_smaller_fleet_removes_the_demo_vehicles_beyond_it(
        self, stack: Stack, gateway: httpx.Client, settings: demo.DemoSettings
    ) -> None:
        # They stayed registered and silent: the offline rule, on every vehicle, alerted.
        larger = demo.setup(dataclasses.replace(settings, vehicles=VEHICLES + 2))
        headers = operator_headers(stack, gateway)
        devices = f"/admin/v1/organizations/{larger.org_id}/devices"
        body = {"unique_id": "my-truck", "name": "My truck"}
        mine = gateway.post(devices, json=body, headers=headers).json()["id"]
        try:
            smaller = demo.setup(settings)

            wanted = [s.unique_id for s in fleet_specs(VEHICLES)]
            assert sorted(smaller.device_ids) == wanted
            page = gateway.get(devices, params={"limit": 100}, headers=headers).json()
            assert sorted(d["unique_id"] for d in page["items"]) == [*wanted, "my-truck"]
        finally:
            gateway.delete(f"/admin/v1/devices/{mine}", headers=headers)


class TestSimulator:
    def test_every_fix_pushed_live_is_stored_once(
        self,
        stack: Stack,
        gateway: httpx.Client,
        state: demo.DemoState,
        owner: dict[str, str],
    ) -> None:
        started = datetime.now(UTC)
        fleet = Fleet(fleet_specs(VEHICLES), 3, started - timedelta(minutes=10))
        with Pusher(stack.gateway_url, state.api_key, fmt="ndjson", compress=True) as pusher:
            result = run_live(pusher, fleet, rate=12.0, duration_s=3.0, keep=True)
            again = pusher.push_batch(result.fixes)
        ended = datetime.now(UTC) + timedelta(seconds=1)

        assert result.stats.rejected == result.stats.failed == 0
        assert result.stats.osmand > 0
        assert result.stats.batches > 0
        assert again is not None
        assert (again["accepted"], again["duplicates"]) == (0, len(result.fixes))
        window: dict[str, str | int] = {
            "from": started.isoformat(),
            "to": ended.isoformat(),
            "limit": 10_000,
        }
        for unique_id, vehicle_id in state.device_ids.items():
            stored = gateway.get(
                f"/api/v1/vehicles/{vehicle_id}/positions", params=window, headers=owner
            ).json()["items"]
            assert len(stored) == result.delivered[unique_id], unique_id
            assert len({p["fix_time"] for p in stored}) == len(stored)


class TestDemoCommand:
    @pytest.fixture
    def demo_environ(
        self, environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
    ) -> Iterator[demo.DemoSettings]:
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        # The operator then comes from the stack's secrets.env, as after `make up`.
        monkeypatch.delenv("MILEPOST_BOOTSTRAP_EMAIL", raising=False)
        monkeypatch.delenv("MILEPOST_BOOTSTRAP_PASSWORD", raising=False)
        settings = demo.settings_from_environ(environ)
        try:
            yield settings
        finally:
            demo.stop(settings)

    def test_demo_starts_the_fleet_in_the_background_and_demo_stop_ends_it(
        self,
        gateway: httpx.Client,
        demo_environ: demo.DemoSettings,
        owner: dict[str, str],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        assert cli.main(["demo", f"--vehicles={VEHICLES}", "--rate=8"]) == 0
        printed = capsys.readouterr().out
        state = demo.DemoState.load(demo_environ.state_file)
        pid = demo.running_pid(demo_environ)

        assert pid is not None
        assert demo_environ.map_url(state.org_id) in printed
        assert f"{demo.OWNER_EMAIL} / {state.owner_password}" in printed
        assert fresh_positions(gateway, owner, len(state.device_ids))

        assert cli.main(["demo-stop"]) == 0
        assert demo.running_pid(demo_environ) is None
        assert not os.path.exists(f"/proc/{pid}")
        assert "milepost-sim [" in demo_environ.log_file.read_text()


class TestBackfill:
    """Last in the file: the worker recomputes these vehicles' timelines from yesterday."""

    def test_a_past_day_is_written_in_large_batches(
        self, stack: Stack, state: demo.DemoState
    ) -> None:
        day = yesterday()
        fleet = Fleet(fleet_specs(VEHICLES), 5, day, WORKDAY)
        with Pusher(stack.gateway_url, state.api_key, fmt="ndjson", compress=True) as pusher:
            result = backfill(pusher, fleet, day, day + timedelta(days=1), batch_size=1000)

        sent = sum(result.delivered.values())
        assert sent > 3000
        assert result.stats.batches == -(-sent // 1000)
        assert (result.stats.accepted, result.stats.rejected) == (sent, 0)


def fresh_positions(gateway: httpx.Client, owner: dict[str, str], vehicles: int) -> bool:
    """Whether every vehicle's latest position is from the last few seconds (polled)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        since = datetime.now(UTC) - timedelta(seconds=5)
        latest = gateway.get("/api/v1/positions/latest", headers=owner).json()["items"]
        recent = [p for p in latest if datetime.fromisoformat(p["fix_time"]) >= since]
        if len(recent) >= vehicles - 1:  # the offline tracker may be silent now
            return True
        time.sleep(0.5)
    return False
