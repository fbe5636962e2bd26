"""Pure ASGI middleware: request id, one access-log line and metrics per request.

Pure ASGI (not ``BaseHTTPMiddleware``) so streaming bodies and contextvars behave, and so
the route template Starlette leaves in the shared ``scope`` is visible after routing.
"""

from __future__ import annotations

import re
import time
import uuid

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from milepost_common.logging import get_logger
from milepost_common.metrics import REQUEST_LATENCY, REQUESTS

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
_UNMATCHED = "<unmatched>"
log = get_logger("milepost.access")


def request_id_of(scope: Scope) -> str:
    """The request id kept in the scope, readable even outside this middleware (500s)."""
    state = scope.get("state") or {}
    return str(state.get("request_id", ""))


def route_template(scope: Scope) -> str:
    """The matched route's full path template, never the raw path (keys can live in paths).

    FastAPI keeps included routers unflattened: the route in the scope knows only its own
    path, the effective context it records knows the path with every prefix.
    """
    effective = (scope.get("fastapi") or {}).get("effective_route_context")
    path = getattr(effective, "path", None)
    if not path:
        route = scope.get("route")
        path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else _UNMATCHED


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, app_name: str) -> None:
        self.app = app
        self.app_name = app_name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = (
            dict(scope["headers"]).get(REQUEST_ID_HEADER.lower().encode(), b"").decode("latin-1")
        )
        request_id = incoming if _SANE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if scope["type"] == "http":
                self._observe(scope, status, time.perf_counter() - started)
            structlog.contextvars.unbind_contextvars("request_id", "org_id", "user_id")

    def _observe(self, scope: Scope, status: int, elapsed: float) -> None:
        route = route_template(scope)
        method = scope["method"]
        REQUESTS.labels(self.app_name, method, route, str(status)).inc()
        REQUEST_LATENCY.labels(self.app_name, method, route).observe(elapsed)
        log.info(
            "request",
            method=method,
            route=route,
            status=status,
            duration_ms=round(elapsed * 1000, 2),
        )


class SecurityHeadersMiddleware:
    """Headers every response carries; the gateway sets them too, the app does not rely on it."""

    _HEADERS = (
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self._HEADERS:
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
