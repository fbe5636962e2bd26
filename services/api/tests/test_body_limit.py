"""The api refuses bodies over its limit before authentication, on a real server process:
DESIGN.md "Request limits" (1 MiB by default)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from milepost_api.settings import ApiSettings

MIB = 1024 * 1024
CHUNK = 64 * 1024
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Server:
    pid: int
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def api_server(
    api_settings: ApiSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """`milepost-api` as `make up` runs it, on the suite's database and Redis."""
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "MILEPOST_ENV": "test",
        "MILEPOST_LOG_LEVEL": "WARNING",
        "MILEPOST_DB__URL": api_settings.db.url,
        "MILEPOST_REDIS__URL": api_settings.redis.url,
        "MILEPOST_REDIS__CACHE_DB": str(api_settings.redis.cache_db),
        "MILEPOST_API__HOST": "127.0.0.1",
        "MILEPOST_API__PORT": str(port),
    }
    log = tmp_path_factory.mktemp("api-server") / "api.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "milepost-api")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(process.pid, "127.0.0.1", port)
    try:
        deadline = time.monotonic() + 60
        while not _answers(f"{server.url}/api/health"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"milepost-api did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def reset_peak_rss_kib(pid: int) -> int:
    """Start the process's peak-RSS count (VmHWM) afresh from its current size; that size."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return peak_rss_kib(pid)


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


def read_response(conn: socket.socket) -> tuple[bytes, bytes]:
    """The head and the body (by its Content-Length) of one HTTP/1.1 answer."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536) or pytest.fail(f"connection closed after {data!r}")
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    )
    while len(body) < length:
        body += conn.recv(65536) or pytest.fail("connection closed mid-body")
    return head, body


async def chunks(total: int) -> AsyncIterator[bytes]:
    """A JSON body streamed in 64 KiB chunks, with no Content-Length."""
    yield b'{"refresh_token": "'
    for _ in range(total // CHUNK):
        yield b"x" * CHUNK
    yield b'"}'


class TestUnauthenticatedRoute:
    async def test_fifty_mib_streamed_is_refused_quickly_without_memory_growth(
        self, api_server: Server
    ) -> None:
        async with httpx.AsyncClient(base_url=api_server.url, timeout=30) as client:
            warm_up = await client.post("/api/v1/auth/refresh", json={"refresh_token": "x"})
            assert warm_up.status_code == 401
            before = reset_peak_rss_kib(api_server.pid)
            started = time.monotonic()

            response = await client.post(
                "/api/v1/auth/refresh", content=chunks(50 * MIB), headers=JSON
            )

            elapsed = time.monotonic() - started
        growth_mib = (peak_rss_kib(api_server.pid) - before) / 1024
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
        assert elapsed < 10
        assert growth_mib < 8, f"the api grew by {growth_mib:.1f} MiB"

    def test_declared_length_over_the_limit_is_answered_before_the_body_is_sent(
        self, api_server: Server
    ) -> None:
        with socket.create_connection((api_server.host, api_server.port), timeout=5) as conn:
            conn.sendall(
                b"POST /api/v1/auth/refresh HTTP/1.1\r\n"
                b"Host: api\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {50 * MIB}\r\n\r\n".encode()
            )
            # Not a byte of the body is sent: only an app that never waits for it answers.
            head, body = read_response(conn)

        assert head.startswith(b"HTTP/1.1 413 ")
        assert b'"payload_too_large"' in body


class TestOpenApi:
    def test_every_operation_with_a_body_documents_the_413(self, api_app: FastAPI) -> None:
        operations = [
            operation
            for path_item in api_app.openapi()["paths"].values()
            for operation in path_item.values()
            if "requestBody" in operation
        ]

        assert operations
        assert all("413" in operation["responses"] for operation in operations)
