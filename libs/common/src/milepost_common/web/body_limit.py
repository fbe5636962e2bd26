"""The request body limit of DESIGN.md's "Request limits", enforced while the body arrives.

Pure ASGI and outside everything that reads a body: a declared ``Content-Length`` over the
limit is answered 413 before the app runs (no route, dependency or authentication sees the
request), and a body sent without a length (chunked) is cut off as soon as its running total
passes the limit, so no more than one chunk past it is ever held.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from milepost_common.errors import PayloadTooLarge
from milepost_common.web.errors import (
    BodyTooLarge,
    ErrorEnvelope,
    body_too_large_message,
    error_response,
)

_REF = "#/components/schemas/"


class BodyLimitMiddleware:
    """413 ``payload_too_large`` for a request body over ``max_bytes``.

    ``larger`` maps path templates (``/admin/v1/organizations/{org_id}/devices/import``) to
    the limits of the few routes that take more.
    """

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, larger: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self._larger: list[tuple[re.Pattern[str], int]] = [
            (compile_path(template)[0], limit) for template, limit in (larger or {}).items()
        ]

    def limit_for(self, path: str) -> int:
        for pattern, limit in self._larger:
            if pattern.match(path):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared, chunked = _framing(scope)
        if declared is not None and declared > limit:
            await _refuse(scope, receive, send, limit)
            return
        if not chunked:
            # The server reads no more than the declared length (none: no body at all), so
            # there is nothing to count: most requests pass without a wrapper.
            await self.app(scope, receive, send)
            return
        received = 0
        started = False

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def send_noting_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive_within_limit, send_noting_start)
        except BodyTooLarge:
            # The app's exception handlers render it; this is for a reader outside them.
            if started:
                raise
            await _refuse(scope, receive, send, limit)


def _framing(scope: Scope) -> tuple[int | None, bool]:
    """The declared ``Content-Length`` (None: none, or not a number) and whether the body
    may come without one (chunked, or a length the server cannot rely on)."""
    declared = None
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            if not value.isdigit():
                return None, True
            declared = int(value)
        elif name == b"transfer-encoding":
            chunked = True
    return declared, chunked


async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    response = error_response(
        Request(scope), 413, PayloadTooLarge.code, body_too_large_message(limit)
    )
    await response(scope, receive, send)


def document_body_limit(
    app: FastAPI, max_bytes: int, larger: Mapping[str, int] | None = None
) -> None:
    """Document the limit's 413 on every operation of ``app``'s OpenAPI that takes a body,
    next to whatever 413 the route declares itself."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        if "ErrorEnvelope" not in components:
            _, definitions = models_json_schema(
                [(ErrorEnvelope, "serialization")], ref_template=_REF + "{model}"
            )
            components.update(definitions.get("$defs", {}))
        for path, path_item in schema.get("paths", {}).items():
            limit = (larger or {}).get(path, max_bytes)
            for operation in path_item.values():
                if isinstance(operation, dict) and "requestBody" in operation:
                    _add_too_large(operation.setdefault("responses", {}), limit)
        return schema

    # FastAPI's documented way to extend the schema; it caches what `generate` returns.
    app.openapi = openapi  # type: ignore[method-assign]


def _add_too_large(responses: dict[str, Any], limit: int) -> None:
    """Add to the route's own 413 (it may have one: too many rows), never replace it."""
    response = responses.setdefault("413", {"description": f"`{PayloadTooLarge.code}`"})
    note = (
        f"the body is over {limit} bytes (the gateway in front refuses such bodies itself,"
        " in plain text)."
    )
    if note not in response["description"]:
        response["description"] = ": ".join(filter(None, (response["description"], note)))
    content = response.setdefault("content", {})
    content.setdefault("application/json", {"schema": {"$ref": _REF + "ErrorEnvelope"}})
    content.setdefault("text/plain", {"schema": {"type": "string"}})
