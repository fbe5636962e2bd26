"""Sending fixes to the gateway as upstream systems do, retrying what the platform defers.

Batches go to ``POST /ingest/v1/positions`` (JSON or NDJSON, optionally gzip) with
``Authorization: Bearer <key>`` and an ``Idempotency-Key`` derived from the body, so a
retried batch is answered with its first answer and never stored twice. Phones' fixes go one
by one to ``/ingest/osmand/<key>`` as query parameters. A 429, 502, 503 or 504 answer, or a
connection that fails, is retried after the answer's ``Retry-After`` (seconds or an HTTP
date), else after an exponential backoff; any other refusal raises ``PushRefused``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx

from milepost_sim.fixes import SimFix

RETRY_STATUSES = frozenset({429, 502, 503, 504})
BatchFormat = Literal["json", "ndjson"]


class PushRefused(Exception):
    """The platform refused a push for good (a bad key, a malformed body, ...)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text[:300]}")
        self.status = status


@dataclass(slots=True)
class PushStats:
    """What was sent and what the ingest answered (OsmAnd answers carry no counts)."""

    batches: int = 0
    osmand: int = 0
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    retries: int = 0
    failed: int = 0
    codes: Counter[str] = field(default_factory=Counter)


def retry_after_s(response: httpx.Response, now: datetime | None = None) -> float | None:
    """The answer's ``Retry-After`` in seconds (delta or HTTP date), None when absent."""
    raw = response.headers.get("Retry-After", "").strip()
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def encode_batch(
    fixes: Sequence[SimFix], fmt: BatchFormat = "json", compress: bool = False
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one batch; the idempotency key is the body's hash."""
    items = [fix.to_item() for fix in fixes]
    if fmt == "ndjson":
        body = "\n".join(json.dumps(item, separators=(",", ":")) for item in items).encode()
        headers = {"Content-Type": "application/x-ndjson"}
    else:
        body = json.dumps({"positions": items}, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
    headers["Idempotency-Key"] = hashlib.sha256(body).hexdigest()[:40]
    if compress:
        body = gzip.compress(body, compresslevel=5, mtime=0)
        headers["Content-Encoding"] = "gzip"
    return body, headers


class Pusher:
    """A client of the gateway's ingest routes for one API key (not thread-safe)."""

    def __init__(
        self,
        gateway_url: str,
        api_key: str,
        *,
        fmt: BatchFormat = "json",
        compress: bool = False,
        max_attempts: int = 10,
        max_wait_s: float = 30.0,
        timeout_s: float = 30.0,
        client: httpx.Client | None = None,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.api_key = api_key
        self.fmt: BatchFormat = fmt
        self.compress = compress
        self.max_attempts = max_attempts
        self.max_wait_s = max_wait_s
        self.sleep = sleep
        self.stats = PushStats()
        self.client = client or httpx.Client(base_url=gateway_url.rstrip("/"), timeout=timeout_s)
        self.answered = False  # the gateway has answered once: later transport errors are blips

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Pusher:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def push_batch(self, fixes: Sequence[SimFix]) -> dict[str, Any] | None:
        """Send one batch; the 202 answer, or None when every attempt was deferred."""
        if not fixes:
            return None
        body, headers = encode_batch(fixes, self.fmt, self.compress)
        headers["Authorization"] = f"Bearer {self.api_key}"
        response = self._send("POST", "/ingest/v1/positions", content=body, headers=headers)
        self.stats.sent += len(fixes)
        if response is None:
            self.stats.failed += len(fixes)
            return None
        answer: dict[str, Any] = response.json()
        self.stats.batches += 1
        self.stats.accepted += answer["accepted"]
        self.stats.rejected += answer["rejected"]
        self.stats.duplicates += answer["duplicates"]
        self.stats.codes.update(error["code"] for error in answer["errors"])
        return answer

    def push_osmand(self, fix: SimFix) -> bool:
        """Send one fix as a phone does; whether it was answered 200. A device the key's
        organization does not have (deleted or transferred in the console) is that fix's
        rejection, as a batch reports it, not the end of every other phone's run."""
        try:
            response = self._send("GET", f"/ingest/osmand/{self.api_key}", params=fix.to_osmand())
        except PushRefused as refused:
            if refused.status not in (400, 404) or "unknown" not in str(refused).lower():
                raise
            self.stats.sent += 1
            self.stats.rejected += 1
            self.stats.codes["unknown_device"] += 1
            return False
        self.stats.sent += 1
        if response is None:
            self.stats.failed += 1
            return False
        self.stats.osmand += 1
        return True

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response | None:
        for attempt in range(self.max_attempts):
            wait: float | None
            try:
                response = self.client.request(method, url, **kwargs)
            except httpx.TransportError:
                if not self.answered:
                    raise  # nothing there yet: no stack, or another port (one line, at once)
                wait = None
            else:
                self.answered = True
                if response.status_code not in RETRY_STATUSES:
                    if response.is_error:
                        raise PushRefused(response.status_code, response.text)
                    return response
                wait = retry_after_s(response)
            if attempt + 1 == self.max_attempts:
                break
            self.stats.retries += 1
            backoff = min(self.max_wait_s, 0.25 * 2**attempt)
            self.sleep(min(self.max_wait_s, wait if wait is not None else backoff))
        return None
