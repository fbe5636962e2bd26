"""The committed Traefik configuration, loaded by the real binary in front of tiny backends.

Traefik drops every route of a dynamic file that has one unknown field, without failing:
only starting it on the very files in deploy/traefik/ proves the routes exist.
"""

from __future__ import annotations

import json
import threading
import time
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
STREAM_PATH_SUFFIX = "/stream"
# The organization export (console and JSON API): a POST answered with a long download.
EXPORT_PATHS = ("/admin/organizations/o-1/export", "/admin/v1/organizations/o-1/export")
HUNG_PATH_SUFFIX = "/hung"
WHOAMI_PATH_SUFFIX = "/whoami"
MIB = 1024 * 1024
# The apps' default body limits, which the gateway matches.
BODY_LIMIT = MIB
IMPORT_BODY_LIMIT = 8 * MIB
# Set by a test once it has the first part of a streamed answer.
stream_released = threading.Event()


class _EchoHandler(BaseHTTPRequestHandler):
    """Answers with JSON naming the backend, the path, the X-Forwarded-For it received and
    (POST) the size of the body."""

    backend = "unset"

    def do_GET(self) -> None:
        if self.path.endswith(STREAM_PATH_SUFFIX):
            self._stream()
            return
        if self.path.endswith(HUNG_PATH_SUFFIX):  # an app whose event loop is blocked
            time.sleep(5)
        payload: dict[str, object] = {"backend": self.backend, "path": self.path}
        if self.path.endswith(WHOAMI_PATH_SUFFIX):
            payload["forwarded_for"] = self.headers.get("X-Forwarded-For")
        if self.path.endswith(LARGE_BODY_PATH_SUFFIX):
            payload["padding"] = "x" * 4096
        self._answer(payload)

    def do_POST(self) -> None:
        received = len(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        if self.path in EXPORT_PATHS:
            self._stream()
            return
        self._answer({"backend": self.backend, "path": self.path, "received": received})

    def _answer(self, payload: dict[str, object]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self) -> None:
        """The first part at once, the rest once the test has seen it (or after 5 s)."""
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.end_headers()
        self.wfile.write(b"first\n")
        self.wfile.flush()
        stream_released.wait(timeout=5)
        self.wfile.write(b"rest\n")

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

    @pytest.mark.parametrize("path", ["/", "/favicon.ico"])
    def test_landing_page_and_favicon_reach_the_api(self, gateway: Gateway, path: str) -> None:
        assert get(f"{gateway.url}{path}").json() == {"backend": "api", "path": path}

    @pytest.mark.parametrize(
        "path", ["/apis", "/administrator", "/metrics", "/index.html", "/robots.txt", "/favicon"]
    )
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

    def test_a_hung_app_is_a_504_not_a_request_held_for_ever(
        self, tmp_path: Path, backends: dict[str, int]
    ) -> None:
        timeout = {"MILEPOST_GATEWAY_RESPONSE_TIMEOUT": "1s"}
        with running_gateway(tmp_path, backends, timeout) as gateway:
            started = time.monotonic()
            hung = httpx.get(f"{gateway.url}/api/v1{HUNG_PATH_SUFFIX}", timeout=10)
            waited = time.monotonic() - started

        assert hung.status_code == 504
        assert waited < 4  # the backend answers after 5 s


def post(url: str, content: bytes | Iterator[bytes]) -> httpx.Response:
    return httpx.post(url, content=content, timeout=10)


def chunked(total: int) -> Iterator[bytes]:
    """A body sent in 64 KiB chunks, without a Content-Length."""
    for _ in range(total // (64 * 1024)):
        yield b"x" * 64 * 1024


class TestBodyLimits:
    @pytest.mark.parametrize("app", ["api", "admin"])
    def test_body_over_the_limit_never_reaches_the_app(self, gateway: Gateway, app: str) -> None:
        response = post(f"{gateway.url}/{app}/v1/things", b"x" * (BODY_LIMIT + 1))

        assert response.status_code == 413
        assert "backend" not in response.text

    def test_streamed_body_over_the_limit_is_refused(self, gateway: Gateway) -> None:
        response = post(f"{gateway.url}/api/v1/auth/refresh", chunked(50 * MIB))

        assert response.status_code == 413
        assert "backend" not in response.text

    @pytest.mark.parametrize("app", ["api", "admin"])
    def test_body_at_the_limit_reaches_the_app(self, gateway: Gateway, app: str) -> None:
        response = post(f"{gateway.url}/{app}/v1/things", b"x" * BODY_LIMIT)

        assert response.json() == {
            "backend": app,
            "path": f"/{app}/v1/things",
            "received": BODY_LIMIT,
        }

    def test_ingest_keeps_its_own_limits(self, gateway: Gateway) -> None:
        response = post(f"{gateway.url}/ingest/v1/positions", b"x" * (2 * BODY_LIMIT))

        assert response.json()["received"] == 2 * BODY_LIMIT

    @pytest.mark.parametrize(
        "path",
        ["/admin/v1/organizations/o-1/devices/import", "/admin/organizations/o-1/devices/import"],
    )
    def test_device_imports_take_their_larger_limit(self, gateway: Gateway, path: str) -> None:
        within = post(f"{gateway.url}{path}", b"x" * IMPORT_BODY_LIMIT)
        over = post(f"{gateway.url}{path}", b"x" * (IMPORT_BODY_LIMIT + 1))

        assert within.json() == {"backend": "admin", "path": path, "received": IMPORT_BODY_LIMIT}
        assert over.status_code == 413

    @pytest.mark.parametrize("app", ["api", "admin"])
    def test_reads_stream_through_unbuffered(self, gateway: Gateway, app: str) -> None:
        stream_released.clear()
        url = f"{gateway.url}/{app}/v1/export{STREAM_PATH_SUFFIX}"
        with httpx.stream("GET", url, timeout=10) as response:
            parts = response.iter_bytes()
            first = next(parts)
            seen_before_the_rest = not stream_released.is_set()
            stream_released.set()
            rest = b"".join(parts)

        assert first == b"first\n"
        assert seen_before_the_rest
        assert rest == b"rest\n"

    @pytest.mark.parametrize("path", EXPORT_PATHS)
    def test_the_organization_export_streams_through_unbuffered(
        self, gateway: Gateway, path: str
    ) -> None:
        # A POST: buffered like other writes, the whole export would be held by the gateway
        # (memory, then disk) and the operator would wait for its last row.
        stream_released.clear()
        url = f"{gateway.url}{path}"
        form = {"format": "ndjson"}
        with httpx.stream("POST", url, data=form, timeout=10) as response:
            parts = response.iter_bytes()
            first = next(parts)
            seen_before_the_rest = not stream_released.is_set()
            stream_released.set()
            rest = b"".join(parts)

        assert first == b"first\n"
        assert seen_before_the_rest
        assert rest == b"rest\n"

    def test_limit_follows_the_apps_variable(
        self, tmp_path: Path, backends: dict[str, int]
    ) -> None:
        limits = {"MILEPOST_API__MAX_BODY_BYTES": "2048"}
        with running_gateway(tmp_path, backends, limits) as small_limit:
            over = post(f"{small_limit.url}/api/v1/things", b"x" * 2049)
            admin = post(f"{small_limit.url}/admin/v1/things", b"x" * 2049)

        assert over.status_code == 413
        assert admin.json()["received"] == 2049


class TestForwardedHeaders:
    @pytest.mark.parametrize("app", APPS)
    def test_a_clients_forwarded_for_is_replaced_by_its_address(
        self, gateway: Gateway, app: str
    ) -> None:
        transport = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(transport=transport, timeout=5) as client:
            response = client.get(
                f"{gateway.url}/{app}/v1{WHOAMI_PATH_SUFFIX}",
                headers={"X-Forwarded-For": "203.0.113.7"},
            )

        assert response.json()["forwarded_for"] == "127.0.0.2"


class TestObservability:
    def test_access_log_skips_osmand_paths(self, gateway: Gateway) -> None:
        get(f"{gateway.url}/ingest/osmand/secret-key-in-path?id=dev1")
        # The app decodes %2F to the same path; the gateway routes on the path as sent.
        encoded = get(f"{gateway.url}/ingest/osmand%2Fsecret-key-encoded?id=dev1")
        get(f"{gateway.url}/ingest/v1/access-log-marker")

        wait_until(
            lambda: "/ingest/v1/access-log-marker" in gateway.log.read_text(),
            timeout=10,
            what="access log line",
        )
        assert encoded.json()["backend"] == "ingest"
        assert "secret-key-in-path" not in gateway.log.read_text()
        assert "secret-key-encoded" not in gateway.log.read_text()

    def test_access_log_skips_the_sso_callbacks_code(self, gateway: Gateway) -> None:
        # The identity provider's one-time code and state ride in the callback's query.
        callback = get(f"{gateway.url}/admin/login/sso/callback?code=one-time-code&state=s1")
        get(f"{gateway.url}/admin/v1/access-log-marker")

        wait_until(
            lambda: "/admin/v1/access-log-marker" in gateway.log.read_text(),
            timeout=10,
            what="access log line",
        )
        assert callback.json()["backend"] == "admin"
        assert "one-time-code" not in gateway.log.read_text()

    def test_metrics_entry_point_serves_router_metrics(self, gateway: Gateway) -> None:
        get(f"{gateway.url}/admin/health")

        metrics = get(f"{gateway.metrics_url}/metrics").text

        assert 'router="admin-reads@file"' in metrics

    def test_configuration_loads_without_errors(self, gateway: Gateway) -> None:
        lines = [
            json.loads(line)
            for line in gateway.log.read_text().splitlines()
            if line.startswith("{")
        ]

        errors = [line for line in lines if line.get("level") in {"error", "fatal"}]

        # Bodies the tests sent over a limit are logged as errors of the request, not of
        # the configuration.
        assert [line for line in errors if line.get("middlewareType") != "Buffer"] == []
