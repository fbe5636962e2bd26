"""Webhook signatures (DESIGN.md, Flows 3): ``Milepost-Signature: t=<unix>,v1=<hex>``.

``v1`` is the hex HMAC-SHA256, keyed with the endpoint's secret, of ``"{t}.{raw body}"``.
Receivers recompute it over the raw bytes they got and reject stale timestamps.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Milepost-Signature"
EVENT_ID_HEADER = "Milepost-Event-Id"
DEFAULT_TOLERANCE_S = 300


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The hex HMAC-SHA256 of ``"{timestamp}.{body}"``."""
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``Milepost-Signature`` header value for ``body`` (now, unless ``timestamp``)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={signature(secret, body, t)}"


def verify(
    secret: str,
    body: bytes,
    header: str,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` within ``tolerance_s`` of ``now``."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        parts.setdefault(name, []).append(value)
    try:
        t = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - t) > tolerance_s:
        return False
    expected = signature(secret, body, t).encode()
    # As bytes: compare_digest raises TypeError for a str that is not ASCII (a forged header).
    return any(
        hmac.compare_digest(expected, candidate.encode()) for candidate in parts.get("v1", [])
    )
