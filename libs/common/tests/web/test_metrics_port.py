"""A metrics port of their own (`HttpSettings.metrics_port`, set in Kubernetes): the app has
no /metrics route, `web.serve` serves the process's metrics on that port instead. Unset, the
app keeps /metrics on its own port (test_observability)."""

from __future__ import annotations

import gc
import urllib.request
from typing import Any

import pytest
import uvicorn
from pydantic import ValidationError

from milepost_common.db import Database
from milepost_common.settings import CommonSettings, HttpSettings
from milepost_common.testing.plugin import app_client
from milepost_common.web import serve
from milepost_common.web.app import AppSpec, create_base_app
from milepost_devstack.net import LOOPBACK, free_ports, http_status

from .conftest import router


def kit_app(settings: CommonSettings, http: HttpSettings) -> Any:
    spec = AppSpec(name="kit", title="kit test app", description="", routers=(router,), http=http)
    return create_base_app(settings, spec)


def test_the_default_keeps_metrics_on_the_app_s_port() -> None:
    assert HttpSettings().metrics_port is None


def test_the_metrics_port_is_not_the_app_s_port() -> None:
    with pytest.raises(ValidationError, match="metrics_port must differ from port"):
        HttpSettings(port=8000, metrics_port=8000)


@pytest.mark.parametrize(
    ("host", "metrics_host"),
    [
        (LOOPBACK, None),  # the app's own host
        ("192.0.2.1", LOOPBACK),  # TEST-NET-1, no interface of this machine: never bound
    ],
)
async def test_metrics_are_served_on_their_own_port_only(
    kit_settings: CommonSettings,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    host: str,
    metrics_host: str | None,
) -> None:
    port, metrics_port = free_ports(2)
    http = HttpSettings(host=host, port=port, metrics_port=metrics_port, metrics_host=metrics_host)
    app = kit_app(kit_settings, http)

    async with app_client(app, database) as client:
        assert (await client.get("/metrics")).status_code == 404
        assert (await client.get("/kit/v1/orgs/4242")).status_code == 404

    served: dict[str, Any] = {}

    def uvicorn_run(asgi: Any, **options: Any) -> None:
        """Stands in for the app's server: the metrics server is up while it runs."""
        served["app"], served["options"] = asgi, options
        url = f"http://{LOOPBACK}:{metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            served["status"] = response.status
            served["body"] = response.read().decode()

    monkeypatch.setattr(uvicorn, "run", uvicorn_run)  # as web.serve calls it
    # A server process freezes what it has built: not the test run's process.
    monkeypatch.setattr(gc, "freeze", lambda: None)
    serve.run(lambda: app, http)

    assert served["app"] is app
    assert (served["options"]["host"], served["options"]["port"]) == (host, port)
    # The gateway, not the app, closes idle connections (no 502 on a reused one).
    assert served["options"]["timeout_keep_alive"] > serve.GATEWAY_IDLE_S
    assert served["status"] == 200
    body = served["body"]
    assert "# TYPE milepost_http_requests_total counter" in body
    assert "milepost_http_request_duration_seconds_bucket" in body
    assert 'app="kit"' in body
    assert 'route="/kit/v1/orgs/{org_id}"' in body
    assert "/kit/v1/orgs/4242" not in body  # the raw path never becomes a label
    # Shut down with the app's server.
    assert http_status(f"http://{LOOPBACK}:{metrics_port}/metrics", timeout=1) is None


def test_no_metrics_server_without_a_metrics_port() -> None:
    assert serve.start_metrics_server(HttpSettings()) is None
