"""The whole stack through Traefik, as a client and an operator see it after `make up`."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from milepost_devstack.stack import APPS, Stack

# One stack per session: every e2e test runs in the same xdist worker.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


def eventually(check: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Whether `check` passes within `timeout` seconds (polled)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.25)
    return True


def ready_status(gateway: httpx.Client, app: str) -> int:
    return gateway.get(f"/{app}/ready").status_code


class TestGateway:
    @pytest.mark.parametrize("app", APPS)
    @pytest.mark.parametrize("probe", ["health", "ready"])
    def test_app_probes_answer_through_the_gateway(
        self, gateway: httpx.Client, app: str, probe: str
    ) -> None:
        assert gateway.get(f"/{app}/{probe}").status_code == 200

    def test_unknown_path_answers_the_error_envelope(self, gateway: httpx.Client) -> None:
        response = gateway.get("/api/v1/no-such-thing")

        assert response.status_code == 404
        error = response.json()["error"]
        assert error["code"] == "not_found"
        assert error["trace_id"] == response.headers["X-Request-ID"]

    def test_metrics_are_not_routed(self, gateway: httpx.Client) -> None:
        assert gateway.get("/metrics").status_code == 404

    def test_security_headers_are_added(self, gateway: httpx.Client) -> None:
        headers = gateway.get("/api/health").headers

        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"


class TestMetrics:
    @pytest.mark.parametrize("app", APPS)
    def test_request_latency_is_labelled_by_route_template(
        self, stack: Stack, gateway: httpx.Client, app: str
    ) -> None:
        gateway.get(f"/{app}/health")
        gateway.get(f"/{app}/v1/raw-path-never-a-label")

        metrics = httpx.get(f"{stack.app_url(app)}/metrics", timeout=10)

        assert metrics.status_code == 200
        routes = {
            sample.labels.get("route")
            for family in text_string_to_metric_families(metrics.text)
            if family.name == "milepost_http_request_duration_seconds"
            for sample in family.samples
            if sample.name.endswith("_bucket")
        }
        assert f"/{app}/health" in routes
        assert not any("raw-path-never-a-label" in str(route) for route in routes)


class TestFirstOperator:
    def test_logs_in_to_admin_through_the_gateway(
        self, stack: Stack, gateway: httpx.Client
    ) -> None:
        credentials = stack.credentials()
        login = {"username": credentials.operator_email, "password": credentials.operator_password}

        token = gateway.post("/admin/v1/auth/token", data=login).json()["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}

        assert gateway.get("/admin/v1/system/status", headers=bearer).status_code == 200


class TestRedisOutage:
    def test_api_degrades_ingest_stays_ready_and_both_recover(
        self, stack: Stack, gateway: httpx.Client
    ) -> None:
        stack.stop_component("redis")
        try:
            assert eventually(lambda: ready_status(gateway, "api") == 503)
            outage = gateway.get("/api/ready")
            ingest_status = ready_status(gateway, "ingest")
        finally:
            stack.start_component("redis")

        assert "redis" in outage.text.lower()
        assert ingest_status == 200
        assert eventually(lambda: ready_status(gateway, "api") == 200)
        assert ready_status(gateway, "ingest") == 200


class TestUp:
    def test_second_up_leaves_running_processes_alone(self, stack: Stack) -> None:
        before = {status.name: status.pid for status in stack.status()}

        stack.up(timeout=120)

        assert {status.name: status.pid for status in stack.status()} == before

    def test_every_component_is_healthy(self, stack: Stack) -> None:
        unhealthy = [status.name for status in stack.status() if not status.healthy]

        assert unhealthy == []
