"""The edge of every app, in one pure-ASGI layer: request id, host check, security headers,
response compression, one access-log line and metrics per request.

One layer rather than a stack of them: each layer costs a call and a ``send`` wrapper on
every request, and on a fast read the stack cost more than the read (bench/api). Pure ASGI
(not ``BaseHTTPMiddleware``) so streaming bodies and contextvars behave, and so the route
template Starlette leaves in the shared ``scope`` is visible after routing.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence

import structlog
from prometheus_client import Counter, Histogram
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from milepost_common.logging import AccessLog
from milepost_common.metrics import REQUEST_LATENCY, REQUESTS

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = REQUEST_ID_HEADER.lower().encode()
_ACCEPT_ENCODING = b"accept-encoding"
_CACHE_CONTROL = b"cache-control"
_NO_STORE = (_CACHE_CONTROL, b"no-store")
_READS = frozenset({"GET", "HEAD"})
# Smaller answers are not worth compressing.
GZIP_MINIMUM_BYTES = 1024
# zlib's own default: a third of the CPU of level 9 (Starlette's) for answers a few per cent
# larger (a 1.5 MB JSON report: 16 ms instead of 43).
GZIP_LEVEL = 6
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
_UNMATCHED = "<unmatched>"
# Headers every response carries; the gateway sets them too, the app does not rely on it.
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
log = AccessLog("milepost.access")


def request_id_of(scope: Scope) -> str:
    """The request id kept in the scope, readable even outside this middleware (500s)."""
    state = scope.get("state") or {}
    return str(state.get("request_id", ""))


# Where an app that matches some paths before FastAPI's router records the template.
ROUTE_TEMPLATE = "milepost.route_template"


def route_template(scope: Scope) -> str:
    """The matched route's full path template, never the raw path (keys can live in paths).

    FastAPI keeps included routers unflattened: the route in the scope knows only its own
    path, the effective context it records knows the path with every prefix.
    """
    path = scope.get(ROUTE_TEMPLATE)
    if not path:
        effective = (scope.get("fastapi") or {}).get("effective_route_context")
        path = getattr(effective, "path", None)
    if not path:
        route = scope.get("route")
        path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else _UNMATCHED


class EdgeMiddleware:
    """Outermost: every answer (errors, 413s, 500s and the host check's 400 included) carries
    the request id and the security headers, and is logged and counted once. Compression
    is negotiated here too, so a client that does not ask for gzip pays nothing for it."""

    def __init__(self, app: ASGIApp, *, app_name: str, trusted_hosts: Sequence[str]) -> None:
        self.app = app
        self.app_name = app_name
        # Starlette's check, in the chain only when some host is not trusted.
        self.inner: ASGIApp = (
            app if "*" in trusted_hosts else TrustedHostMiddleware(app, allowed_hosts=trusted_hosts)
        )
        self.gzipped: ASGIApp = GZipMiddleware(
            self.inner, minimum_size=GZIP_MINIMUM_BYTES, compresslevel=GZIP_LEVEL
        )
        # The counter and histogram children by (method, route template, status): looking
        # a labelled child up takes a lock and several calls; the set is bounded by routes.
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        incoming = ""
        gzip = False
        for name, value in scope["headers"]:
            if name == _REQUEST_ID:
                incoming = value.decode("latin-1")
            elif name == _ACCEPT_ENCODING:
                gzip = b"gzip" in value
        request_id = incoming if _SANE_REQUEST_ID.match(incoming) else os.urandom(16).hex()
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        if kind == "websocket":
            try:
                await self.inner(scope, receive, send)
            finally:
                structlog.contextvars.unbind_contextvars("request_id", "org_id", "user_id")
            return
        marked = (_REQUEST_ID, request_id.encode("latin-1"))
        write = scope["method"] not in _READS
        status = 500
        started = time.perf_counter()

        async def send_marked(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = _marked(
                    message.get("headers", ()), marked, vary=not gzip, no_store=write
                )
            await send(message)

        try:
            await (self.gzipped if gzip else self.inner)(scope, receive, send_marked)
        finally:
            self._observe(scope, status, time.perf_counter() - started)
            structlog.contextvars.unbind_contextvars("request_id", "org_id", "user_id")

    def _observe(self, scope: Scope, status: int, elapsed: float) -> None:
        route = route_template(scope)
        method = scope["method"]
        series = self._series.get((method, route, status))
        if series is None:
            series = self._series[method, route, status] = (
                REQUESTS.labels(self.app_name, method, route, str(status)),
                REQUEST_LATENCY.labels(self.app_name, method, route),
            )
        series[0].inc()
        series[1].observe(elapsed)
        log.info(
            "request",
            method=method,
            route=route,
            status=status,
            duration_ms=round(elapsed * 1000, 2),
        )


def _marked(
    headers: Sequence[tuple[bytes, bytes]],
    request_id: tuple[bytes, bytes],
    *,
    vary: bool,
    no_store: bool,
) -> list[tuple[bytes, bytes]]:
    """``headers`` with the request id (replacing any) and each security header it lacks.

    With ``no_store`` (the answer to a write), ``Cache-Control: no-store`` unless the app
    chose a policy: such answers carry tokens, keys and one-time links, which no cache may
    keep to show again (RFC 6749 5.1 requires it of token answers).

    With ``vary`` (an answer not compressed because the client did not ask), also what
    Starlette's GZip adds to such an answer that it would have compressed: ``Vary:
    Accept-Encoding``, so a shared cache keeps the encodings apart."""
    present = {name.lower(): value for name, value in headers}
    if _REQUEST_ID in present:
        out = [h for h in headers if h[0].lower() != _REQUEST_ID]
    else:
        out = list(headers)
    out.append(request_id)
    out.extend(h for h in SECURITY_HEADERS if h[0] not in present)
    if no_store and _CACHE_CONTROL not in present:
        out.append(_NO_STORE)
    if vary and _compressible(present):
        _add_vary(out, present)
    return out


def accepts_gzip(scope: Scope) -> bool:
    """Whether the client asked for gzip (``Accept-Encoding``), as the edge decides it."""
    return any(name == _ACCEPT_ENCODING and b"gzip" in value for name, value in scope["headers"])


def _compressible(headers: dict[bytes, bytes]) -> bool:
    """Whether GZip would compress this answer for a client that asks (its size known from
    ``Content-Length``; a stream counts as large)."""
    if b"content-encoding" in headers:
        return False
    length = headers.get(b"content-length")
    if length is not None and length.isdigit() and int(length) < GZIP_MINIMUM_BYTES:
        return False
    media_type = headers.get(b"content-type", b"").partition(b";")[0].strip().lower().decode()
    excluded = DEFAULT_EXCLUDED_CONTENT_TYPES
    return media_type not in excluded and media_type.partition("/")[0] + "/*" not in excluded


def _add_vary(headers: list[tuple[bytes, bytes]], present: dict[bytes, bytes]) -> None:
    vary = present.get(b"vary")
    if vary is None:
        headers.append((b"vary", b"Accept-Encoding"))
    elif b"accept-encoding" not in vary.lower():
        index = next(i for i, (name, _) in enumerate(headers) if name.lower() == b"vary")
        headers[index] = (headers[index][0], vary + b", Accept-Encoding")
