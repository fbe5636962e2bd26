"""`milepost-sim run` and `backfill` as a script or CI step meets them: the exit status says
whether the ingest took anything. The command runs as a process against a stand-in ingest
on a loopback port that answers as the real one does (202 with counts, 400 for an unknown
phone, 503 with Retry-After); the real ingest is exercised in tests/e2e/test_sim.py."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

UNKNOWN = {"code": "unknown_device", "message": "Unknown device."}


class StandInIngest(BaseHTTPRequestHandler):
    """``/ingest/v1/positions`` and ``/ingest/osmand/<key>``, answering per ``mode``:
    "reject" every fix as an unknown device, "defer" every push with 503, "phones" accept
    the batches and reject the phones (their devices unknown)."""

    mode: ClassVar[str] = "reject"
    base_url: ClassVar[str] = ""

    def log_message(self, *_: object) -> None:
        return

    def _answer(self, status: int, body: object, **headers: str) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:
        count = len(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["positions"])
        if self.mode == "defer":
            self._answer(503, {"error": {"code": "unavailable"}}, **{"Retry-After": "0"})
        elif self.mode == "phones":
            answer = {"batch_id": "b", "accepted": count, "rejected": 0, "duplicates": 0}
            self._answer(202, {**answer, "errors": []})
        else:
            errors = [{"index": i, **UNKNOWN} for i in range(count)]
            answer = {"batch_id": "b", "accepted": 0, "rejected": count, "duplicates": 0}
            self._answer(202, {**answer, "errors": errors})

    def do_GET(self) -> None:
        if self.mode == "defer":
            self._answer(503, {"error": {"code": "unavailable"}}, **{"Retry-After": "0"})
        else:
            self._answer(400, {"error": {"code": "bad_request", "message": "Unknown device."}})


@pytest.fixture
def ingest() -> Iterator[type[StandInIngest]]:
    class Handler(StandInIngest):  # this test's own mode
        pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Handler.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield Handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def sim(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`milepost-sim <args>` with a key of its own, three vehicles (one a phone)."""
    env = {"PATH": "/usr/bin:/bin", "MILEPOST_STATE_DIR": str(tmp_path / "state")}
    env["MILEPOST_SIM_API_KEY"] = "mpk_stand_in"
    argv = [sys.executable, "-m", "milepost_sim", *args, f"--gateway={url}", "--vehicles=3"]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)


RUN = ("run", "--rate=20", "--duration=1")
BACKFILL = ("backfill", "--date=2026-03-01")


@pytest.mark.parametrize(
    ("args", "mode", "why"),
    [
        (RUN, "reject", "rejected (unknown_device: "),
        (RUN, "defer", " 0 rejected, "),
        (BACKFILL, "reject", "rejected (unknown_device: "),
    ],
    ids=["run-all-rejected", "run-all-deferred", "backfill-all-rejected"],
)
def test_nothing_accepted_fails_with_one_line_saying_why(
    tmp_path: Path, ingest: type[StandInIngest], args: tuple[str, ...], mode: str, why: str
) -> None:
    ingest.mode = mode

    done = sim(tmp_path, ingest.base_url, *args)

    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("milepost-sim: no fix was accepted: "), done.stderr
    assert why in last


def test_some_rejected_beside_accepted_passes_with_a_summary(
    tmp_path: Path, ingest: type[StandInIngest]
) -> None:
    ingest.mode = "phones"

    done = sim(tmp_path, ingest.base_url, *RUN)

    assert done.returncode == 0, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert " fixes accepted; " in last
    assert "rejected (unknown_device: " in last
