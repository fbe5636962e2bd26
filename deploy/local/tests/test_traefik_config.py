"""The committed Traefik configuration, loaded by the real binary in front of tiny backends.

Traefik drops every route of a dynamic file that has one unknown field, without failing:
only starting it on the very files in deploy/traefik/ proves the routes exist.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from milepost_devstack import traefik
from milepost_devstack.net import LOOPBACK, free_ports, http_status, wait_until
from milepost_devstack.process import ProcessManager

APPS = ("api", "admin", "ingest")
LARGE_BODY_PATH_SUFFIX = "/large"


class _EchoHandler(BaseHTTPRequestHandler):
    """Answers every GET with JSON naming the backend and the path it received."""

    backend = "unset"

    def do_GET(self) -> None:
        payload: dict[str, object] = {"backend": self.backend, "path": self.path}
        if self.path.endswith(LARGE_BODY_PATH_SUFFIX):
            payload["padding"] = "x" * 4096
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@dataclass(frozen=True)
class Gateway:
    url: str
    metrics_url: str
    log: Path


def get(url: str, headers: Mapping[str, str] | None = None) -> httpx.Response:
    return httpx.get(url, headers=headers, timeout=5)


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, int]]:
    servers = {}
    for app, port in zip(APPS, free_ports(len(APPS)), strict=True):
        handler = type(f"{app}Handler", (_EchoHandler,), {"backend": app})
        servers[app] = ThreadingHTTPServer((LOOPBACK, port), handler)
        threading.Thread(target=servers[app].serve_forever, daemon=True).start()
    yield {app: server.server_address[1] for app, server in servers.items()}
    for server in servers.values():
        server.shutdown()
        server.server_close()


@contextmanager
def running_gateway(
    tmp: Path, backends: Mapping[str, int], extra_env: Mapping[str, str]
) -> Iterator[Gateway]:
    """Traefik on the committed configuration in front of `backends`; stopped on exit."""
    gateway_port, metrics_port = free_ports(2)
    static = traefik.render_static_config(tmp / "traefik.yml", gateway_port, metrics_port)
    upstreams = traefik.Upstreams.on_loopback(
        backends["api"], backends["admin"], backends["ingest"]
    )
    processes = ProcessManager(tmp / "run", tmp / "logs")
    env = {"PATH": "/usr/bin:/bin", **extra_env}
    processes.start(traefik.process_spec(static, upstreams, env, tmp))
    gateway = Gateway(
        f"http://{LOOPBACK}:{gateway_port}",
        f"http://{LOOPBACK}:{metrics_port}",
        processes.log_path(traefik.NAME),
    )
    try:
        # /ping answers before the file provider's routes are in: wait for a routed answer.
        wait_until(
            lambda: http_status(f"{gateway.url}/api/health") == 200,
            timeout=30,
            what="traefik routes",
        )
        yield gateway
    finally:
        processes.stop([traefik.NAME])


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, backends: dict[str, int]
) -> Iterator[Gateway]:
    with running_gateway(tmp_path_factory.mktemp("traefik"), backends, {}) as gateway:
        yield gateway


class TestRouting:
    @pytest.mark.parametrize("app", APPS)
    def test_prefix_reaches_its_app_unchanged(self, gateway: Gateway, app: str) -> None:
        response = get(f"{gateway.url}/{app}/v1/things?limit=5")

        assert response.status_code == 200
        assert response.json() == {"backend": app, "path": f"/{app}/v1/things?limit=5"}

    @pytest.mark.parametrize("app", APPS)
    def test_bare_prefix_is_routed(self, gateway: Gateway, app: str) -> None:
        assert get(f"{gateway.url}/{app}").json()["backend"] == app

    def test_osmand_path_reaches_ingest(self, gateway: Gateway) -> None:
        response = get(f"{gateway.url}/ingest/osmand/some-key?id=dev1&lat=52.5&lon=13.4")

        assert response.json()["backend"] == "ingest"

    @pytest.mark.parametrize("path", ["/apis", "/administrator", "/", "/metrics"])
    def test_other_paths_are_not_routed(self, gateway: Gateway, path: str) -> None:
        response = get(f"{gateway.url}{path}")

        assert response.status_code == 404
        assert "backend" not in response.text


class TestMiddlewares:
    def test_security_headers_are_set(self, gateway: Gateway) -> None:
        headers = get(f"{gateway.url}/api/health").headers

        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert "server" not in headers

    def test_large_responses_are_compressed(self, gateway: Gateway) -> None:
        response = get(f"{gateway.url}/api/v1{LARGE_BODY_PATH_SUFFIX}", {"Accept-Encoding": "gzip"})

        assert response.headers.get("content-encoding") == "gzip"
        assert response.json()["backend"] == "api"

    def test_rate_limit_comes_from_the_environment(
        self, tmp_path: Path, backends: dict[str, int]
    ) -> None:
        limits = {"MILEPOST_GATEWAY_RATE_AVERAGE": "1", "MILEPOST_GATEWAY_RATE_BURST": "1"}
        with running_gateway(tmp_path, backends, limits) as low_limit:
            statuses = {get(f"{low_limit.url}/api/health").status_code for _ in range(5)}

        assert 429 in statuses


class TestObservability:
    def test_access_log_skips_osmand_paths(self, gateway: Gateway) -> None:
        get(f"{gateway.url}/ingest/osmand/secret-key-in-path?id=dev1")
        get(f"{gateway.url}/ingest/v1/access-log-marker")

        wait_until(
            lambda: "/ingest/v1/access-log-marker" in gateway.log.read_text(),
            timeout=10,
            what="access log line",
        )
        assert "secret-key-in-path" not in gateway.log.read_text()

    def test_metrics_entry_point_serves_router_metrics(self, gateway: Gateway) -> None:
        get(f"{gateway.url}/admin/health")

        metrics = get(f"{gateway.metrics_url}/metrics").text

        assert 'router="admin@file"' in metrics

    def test_configuration_loads_without_errors(self, gateway: Gateway) -> None:
        lines = [
            json.loads(line)
            for line in gateway.log.read_text().splitlines()
            if line.startswith("{")
        ]

        assert [line for line in lines if line.get("level") in {"error", "fatal"}] == []
