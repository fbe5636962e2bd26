"""OpenTelemetry tracing with an endpoint set: the real `milepost-api` and `milepost-worker`
processes export their spans over OTLP/HTTP to a collector (a local test server decoding the
protobuf requests). Request spans carry the route template and nothing raw, join an incoming
`traceparent`, and have the database and Redis spans as children; a prefork worker child
traces the tasks it runs."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from milepost_api.settings import ApiSettings
from milepost_common import tasks
from milepost_common.tasks import Publisher

pytestmark = pytest.mark.slow

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@dataclass
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any] = field(default_factory=dict)


class Collector:
    """An OTLP/HTTP trace receiver on loopback: what a collector would be sent."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                collector.add(request)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, request: ExportTraceServiceRequest) -> None:
        with self._lock:
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append(
                            Span(
                                resource.get("service.name", ""),
                                span.name,
                                span.trace_id.hex(),
                                span.span_id.hex(),
                                span.parent_span_id.hex(),
                                {a.key: _value(a.value) for a in span.attributes},
                            )
                        )

    def wait_for(self, found: Callable[[list[Span]], bool], timeout_s: float = 30) -> list[Span]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                spans = list(self.spans)
            if found(spans):
                return spans
            time.sleep(0.1)
        names = sorted({(s.service, s.name) for s in spans})
        raise AssertionError(f"spans not exported in {timeout_s:.0f} s; got {names}")


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@pytest.fixture
def collector() -> Iterator[Collector]:
    collector = Collector()
    thread = threading.Thread(target=collector.server.serve_forever, daemon=True)
    thread.start()
    yield collector
    collector.server.shutdown()
    collector.server.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def traced_env(
    committed_database: str, settings_factory: Callable[..., ApiSettings], collector: Collector
) -> dict[str, str]:
    settings = settings_factory(ApiSettings)
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MILEPOST_", "OTEL_"))},
        "MILEPOST_ENV": "test",
        "MILEPOST_DB__URL": committed_database,
        "MILEPOST_DB__POOL_SIZE": "2",
        "MILEPOST_REDIS__URL": settings.redis.url,
        "MILEPOST_REDIS__CACHE_DB": str(settings.redis.cache_db),
        "MILEPOST_OTEL__ENDPOINT": collector.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export within a tenth of a second
    }


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


@pytest.fixture
def api_process(traced_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    binary = shutil.which("milepost-api")
    assert binary, "milepost-api is installed with the workspace"
    env = {**traced_env, "MILEPOST_API__HOST": "127.0.0.1", "MILEPOST_API__PORT": str(port)}
    process = _start([binary], env, tmp_path / "api.log")
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/api/health", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError((tmp_path / "api.log").read_text()) from None
                time.sleep(0.1)
        yield base
    finally:
        _stop(process)


class TestApiSpans:
    def test_a_request_is_one_trace_with_its_database_and_redis_spans(
        self, api_process: str, collector: Collector
    ) -> None:
        response = httpx.get(
            f"{api_process}/api/ready",
            headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
        )
        assert response.status_code == 200

        def request_done(spans: list[Span]) -> bool:
            return any(s.attributes.get("http.route") == "/api/ready" for s in spans)

        spans = [s for s in collector.wait_for(request_done) if s.trace_id == TRACE_ID]
        server = next(s for s in spans if s.attributes.get("http.route") == "/api/ready")
        assert server.service == "milepost-api"
        assert server.parent_id == PARENT_ID  # joined the caller's trace
        assert server.attributes["http.response.status_code"] == 200
        children = {s.span_id: s for s in spans}

        def under_request(span: Span) -> bool:
            while span.parent_id in children:
                span = children[span.parent_id]
            return span.span_id == server.span_id

        database = [s for s in spans if s.attributes.get("db.system") == "postgresql"]
        redis = [s for s in spans if s.attributes.get("db.system") == "redis"]
        assert database, [(s.name, s.attributes) for s in spans]
        assert redis, [s.name for s in spans]
        assert all(under_request(s) for s in database + redis)

    def test_a_hot_read_is_named_by_its_route(self, api_process: str, collector: Collector) -> None:
        """A traced process routes the reads an untraced one answers before FastAPI's router
        (``DirectDispatch``), so their spans still carry the route."""
        template = "/api/v1/vehicles/{vehicle_id}/positions"
        response = httpx.get(f"{api_process}/api/v1/vehicles/{uuid.uuid4()}/positions")
        assert response.status_code == 401

        def read_done(spans: list[Span]) -> bool:
            return any(s.attributes.get("http.response.status_code") == 401 for s in spans)

        server = next(
            s
            for s in collector.wait_for(read_done)
            if s.attributes.get("http.response.status_code") == 401
        )
        assert server.attributes.get("http.route") == template
        assert server.name == f"GET {template}"

    def test_raw_paths_and_queries_never_leave_the_process(
        self, api_process: str, collector: Collector
    ) -> None:
        secret = "mp_live_" + "s3cr3t" * 4
        response = httpx.get(f"{api_process}/api/v1/{secret}/x", params={"token": secret})
        assert response.status_code == 404

        def not_found_done(spans: list[Span]) -> bool:
            return any(s.attributes.get("http.response.status_code") == 404 for s in spans)

        spans = collector.wait_for(not_found_done)
        exported = repr([(s.name, s.attributes) for s in spans])
        assert secret not in exported
        server = next(s for s in spans if s.attributes.get("http.response.status_code") == 404)
        assert server.attributes["url.path"] == "[redacted]"

    def test_the_log_names_the_collector_without_its_credentials(
        self, traced_env: dict[str, str], collector: Collector, tmp_path: Path
    ) -> None:
        host = collector.url.removeprefix("http://")
        env = {
            **traced_env,
            "MILEPOST_OTEL__ENDPOINT": f"http://milepost:otel-pass@{host}",
            "MILEPOST_API__HOST": "127.0.0.1",
            "MILEPOST_API__PORT": str(_free_port()),
        }
        binary = shutil.which("milepost-api")
        assert binary, "milepost-api is installed with the workspace"
        log = tmp_path / "api.log"
        process = _start([binary], env, log)
        try:
            deadline = time.monotonic() + 30
            while "tracing_on" not in log.read_text():
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        finally:
            _stop(process)

        text = log.read_text()
        assert "otel-pass" not in text
        assert f'"endpoint":"{collector.url}"' in text


class TestWorkerSpans:
    def test_a_prefork_child_traces_the_tasks_it_runs(
        self, traced_env: dict[str, str], collector: Collector, tmp_path: Path
    ) -> None:
        binary = shutil.which("milepost-worker")
        assert binary, "milepost-worker is installed with the workspace"
        env = {**traced_env, "MILEPOST_WORKER__METRICS_PORT": "0"}
        process = _start(
            [binary, "--concurrency", "1", "--loglevel", "INFO", "--hostname", "tracing@%h"],
            env,
            tmp_path / "worker.log",
        )
        settings = ApiSettings(
            redis={"url": env["MILEPOST_REDIS__URL"]},  # type: ignore[arg-type]
        )
        publisher = Publisher(settings.redis, settings.celery)
        try:

            def ran(spans: list[Span]) -> bool:
                return any(
                    s.service == "milepost-worker" and tasks.SYSTEM_PING in s.name for s in spans
                )

            deadline = time.monotonic() + 60
            while True:
                publisher.send_blocking(tasks.SYSTEM_PING)
                try:
                    collector.wait_for(ran, timeout_s=2)
                    break
                except AssertionError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise AssertionError((tmp_path / "worker.log").read_text()) from None
        finally:
            publisher.close()
            _stop(process)
