"""A stand-in ingest on a loopback port that answers as the real one does (202 with counts,
400 for an unknown phone, 503 with Retry-After); the real ingest is exercised in
tests/e2e/test_sim.py."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import ClassVar

UNKNOWN = {"code": "unknown_device", "message": "Unknown device."}


class StandInIngest(BaseHTTPRequestHandler):
    """``/ingest/v1/positions`` and ``/ingest/osmand/<key>``, answering per ``mode``:
    "reject" every fix as an unknown device, "defer" every push with 503, "phones" accept
    the batches and reject the phones (their devices unknown)."""

    mode: ClassVar[str] = "reject"
    retry_after: ClassVar[str] = "0"  # seconds a deferred push is told to wait
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

    def _defer(self) -> None:
        self._answer(503, {"error": {"code": "unavailable"}}, **{"Retry-After": self.retry_after})

    def do_POST(self) -> None:
        count = len(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["positions"])
        if self.mode == "defer":
            self._defer()
        elif self.mode == "phones":
            answer = {"batch_id": "b", "accepted": count, "rejected": 0, "duplicates": 0}
            self._answer(202, {**answer, "errors": []})
        else:
            errors = [{"index": i, **UNKNOWN} for i in range(count)]
            answer = {"batch_id": "b", "accepted": 0, "rejected": count, "duplicates": 0}
            self._answer(202, {**answer, "errors": errors})

    def do_GET(self) -> None:
        if self.mode == "defer":
            self._defer()
        else:
            self._answer(400, {"error": {"code": "bad_request", "message": "Unknown device."}})
