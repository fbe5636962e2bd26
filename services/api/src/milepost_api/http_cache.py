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

from starlette.datastructures import Headers, MutableHeaders
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
    return 'W/"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


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


def _with_default(send: Send) -> Send:
    async def send_no_store(message: Message) -> None:
        if message["type"] == "http.response.start":
            MutableHeaders(scope=message).setdefault("Cache-Control", NO_STORE)
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
            headers = MutableHeaders(scope=message)
            if message["status"] != 200 or policy is None:
                headers.setdefault("Cache-Control", NO_STORE)
                self.passthrough = True
                await self.send(message)
                return
            headers.setdefault("Cache-Control", policy)
            headers.setdefault("Vary", "Authorization, Accept")
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
        body = b"".join(self.chunks)
        etag = etag_of(body)
        headers = MutableHeaders(scope=self.start)
        headers["ETag"] = etag
        if_none_match = Headers(scope=self.scope).get("if-none-match")
        if if_none_match and _matches(if_none_match, etag):
            for name in ("content-length", "content-type", "content-encoding"):
                if name in headers:
                    del headers[name]
            await self.send({**self.start, "status": 304})
            await self.send({"type": "http.response.body", "body": b""})
            return
        await self.send(self.start)
        await self.send({"type": "http.response.body", "body": body})
