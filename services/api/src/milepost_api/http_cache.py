"""ETags, ``If-None-Match`` → 304, and a deliberate ``Cache-Control`` on every answer.

Read routes declare their policy with :func:`cache_control`; everything else (writes,
auth, errors) is ``no-store``. The ETag is a weak validator over the JSON body, computed
after the handler, so it changes exactly when what the client would see changes. Streamed
bodies (CSV exports) get the policy but no ETag.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

F = TypeVar("F", bound=Callable[..., Any])

NO_STORE = "no-store"
# Changes any second (new fixes): a private cache may keep it briefly.
LIVE = "private, max-age=5"
# Stable unless someone edits it: always revalidate, cheap with the ETag.
REVALIDATE = "private, no-cache"
# History and reports: rarely change, a short private cache is safe.
HISTORY = "private, max-age=30"

_POLICY_ATTR = "__milepost_cache_control__"


def cache_control(policy: str) -> Callable[[F], F]:
    """Mark a GET handler's answers cacheable with ``policy`` (and ETag-validated)."""

    def mark(endpoint: F) -> F:
        setattr(endpoint, _POLICY_ATTR, policy)
        return endpoint

    return mark


def _policy_of(scope: Scope) -> str | None:
    endpoint = scope.get("endpoint")
    return getattr(endpoint, _POLICY_ATTR, None) if endpoint is not None else None


def etag_of(body: bytes) -> str:
    # SHA-256 cut to 128 bits: the CPU's SHA instructions hash a 20 KB page in half
    # BLAKE2b's time (10 against 19 µs, bench/api/RESULTS.md), and the length is the same.
    return 'W/"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _matches(if_none_match: str, etag: str) -> bool:
    if if_none_match.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(
        candidate.strip().removeprefix("W/") == opaque for candidate in if_none_match.split(",")
    )


class HttpCacheMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, _with_default(send))
            return
        await _CachedExchange(scope, send).run(self.app, receive)


_CACHE_CONTROL = b"cache-control"
_NO_STORE = (_CACHE_CONTROL, NO_STORE.encode())
_VARY = (b"vary", b"Authorization, Accept")
# Dropped from a 304, which has no body.
_BODY_HEADERS = frozenset({b"content-length", b"content-type", b"content-encoding"})


def _names(headers: list[tuple[bytes, bytes]]) -> set[bytes]:
    return {name.lower() for name, _ in headers}


def _with_default(send: Send) -> Send:
    async def send_no_store(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            if _CACHE_CONTROL not in _names(headers):
                headers.append(_NO_STORE)
            message["headers"] = headers
        await send(message)

    return send_no_store


class _CachedExchange:
    """One GET: holds a 200's start message until the whole body is known."""

    def __init__(self, scope: Scope, send: Send) -> None:
        self.scope = scope
        self.send = send
        self.start: Message | None = None
        self.chunks: list[bytes] = []
        self.passthrough = False

    async def run(self, app: ASGIApp, receive: Receive) -> None:
        await app(self.scope, receive, self.on_send)

    async def on_send(self, message: Message) -> None:
        if self.passthrough:
            await self.send(message)
            return
        if message["type"] == "http.response.start":
            policy = _policy_of(self.scope)
            headers = list(message.get("headers", ()))
            message["headers"] = headers
            names = _names(headers)
            if message["status"] != 200 or policy is None:
                if _CACHE_CONTROL not in names:
                    headers.append(_NO_STORE)
                self.passthrough = True
                await self.send(message)
                return
            if _CACHE_CONTROL not in names:
                headers.append((_CACHE_CONTROL, policy.encode()))
            if b"vary" not in names:
                headers.append(_VARY)
            self.start = message
            return
        if message["type"] != "http.response.body" or self.start is None:
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            if len(self.chunks) == 1:
                # A stream: send as it comes, no ETag (that would mean buffering it all).
                self.passthrough = True
                await self.send(self.start)
                await self.send({**message, "body": self.chunks.pop()})
            return
        await self._finish()

    async def _finish(self) -> None:
        assert self.start is not None  # noqa: S101 - set before any body
        body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        headers: list[tuple[bytes, bytes]] = self.start["headers"]
        # A handler that knows its body's ETag (kept with cached bytes) sets it itself.
        etag = next((value.decode() for name, value in headers if name.lower() == b"etag"), None)
        if etag is None:
            etag = etag_of(body)
            headers.append((b"etag", etag.encode()))
        if_none_match = _header(self.scope, b"if-none-match")
        if if_none_match and _matches(if_none_match, etag):
            self.start["headers"] = [h for h in headers if h[0].lower() not in _BODY_HEADERS]
            await self.send({**self.start, "status": 304})
            await self.send({"type": "http.response.body", "body": b""})
            return
        await self.send(self.start)
        await self.send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None
