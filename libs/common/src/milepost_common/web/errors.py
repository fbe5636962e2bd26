"""The error envelope of DESIGN.md for every non-2xx answer of every app.

The only module that touches ``HTTPException``: routing 404/405 and framework errors are
mapped onto the same codes as the domain's ``AppError`` hierarchy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, cast

import asyncpg  # type: ignore[import-untyped]
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.params import Form
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SqlTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from milepost_common import errors
from milepost_common.logging import get_logger
from milepost_common.web.middleware import REQUEST_ID_HEADER, request_id_of, route_template

log = get_logger("milepost.errors")

_CODE_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}
_MESSAGE_BY_STATUS = {404: "Not found.", 405: "Method not allowed."}


class ErrorDetail(BaseModel):
    loc: list[str | int] = Field(examples=[["body", "positions", 0, "lat"]])
    msg: str
    type: str


class ErrorBody(BaseModel):
    code: str = Field(examples=["not_found"])
    message: str = Field(examples=["Not found."])
    details: list[ErrorDetail] = Field(default_factory=list)
    trace_id: str = Field(examples=["3f1c2a9d8e7b4c6a9f0e1d2c3b4a5968"])


class ErrorEnvelope(BaseModel):
    error: ErrorBody


class BodyTooLarge(StarletteHTTPException):
    """Raised by the body limit's ``receive`` once the running total passes the limit.

    An HTTPException because FastAPI's body parsing lets those through and turns any other
    exception into 400; the handlers below render it as 413 ``payload_too_large``.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, body_too_large_message(limit))


def body_too_large_message(limit: int) -> str:
    return f"The request body exceeds {limit} bytes."


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """An error answer's fields as the envelope writes them: what an app's own error page
    (``AppSpec.error_page``) shows instead."""

    status_code: int
    code: str
    message: str
    details: list[dict[str, Any]]


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Every error answer of every app: the envelope, or the app's own page for the requests
    it claims (the admin console's browser), whatever raised it — the app, the framework,
    the database, the body limit or the 500 handler."""
    trace_id = request_id_of(request.scope)
    # Set here too: the 500 handler runs outside the middleware that adds it to the rest.
    headers = {**(headers or {}), REQUEST_ID_HEADER: trace_id}
    app = request.scope.get("app")  # None for a bare ASGI app behind the body limit
    spec = getattr(app.state, "spec", None) if app is not None else None
    if spec is not None and spec.error_page is not None:
        answer = ErrorAnswer(status, code, message, details or [])
        page: Response | None = spec.error_page(request, answer)
        if page is not None:
            page.headers.update(headers)
            return page
    body = {
        "error": {
            "code": code,
            "message": message,
            "details": details or [],
            "trace_id": trace_id,
        }
    }
    return Response(orjson.dumps(body), status, headers=headers, media_type="application/json")


async def _app_error(request: Request, exc: Exception) -> Response:
    exc = cast(errors.AppError, exc)
    if exc.status_code >= 500:
        log.warning("app_error", code=exc.code, error=exc.message)
    return error_response(request, exc.status_code, exc.code, exc.message, exc.details, exc.headers)


async def http_error(request: Request, exc: Exception) -> Response:
    """Framework errors (routing 404/405, unreadable bodies) in the envelope."""
    exc = cast(StarletteHTTPException, exc)
    if exc.status_code == 400:
        # The framework's only 400: a body it could not read (JSON that is not UTF-8, a
        # broken form or multipart body). Domain 400s are AppErrors and never come here.
        malformed = errors.MalformedBody()
        return error_response(request, 400, malformed.code, malformed.message)
    code = _CODE_BY_STATUS.get(
        exc.status_code, "bad_request" if exc.status_code < 500 else "internal_error"
    )
    message = _MESSAGE_BY_STATUS.get(exc.status_code) or (
        exc.detail if isinstance(exc.detail, str) else "Request failed."
    )
    spec = getattr(request.app.state, "spec", None)
    if exc.status_code == 404 and spec is not None:
        # No route here (domain 404s are AppErrors): the app's own page, or where the
        # operations are.
        own_page: Response | None = None
        if spec.not_found_page is not None:
            own_page = await spec.not_found_page(request)
        if own_page is not None:
            return own_page
        message = f"{message} The operations are listed at {spec.prefix}/docs."
    headers = dict(exc.headers or {})
    if exc.status_code == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    return error_response(request, exc.status_code, code, message, headers=headers)


def validation_details(raw: list[Any]) -> list[dict[str, Any]]:
    """Pydantic errors reduced to {loc, msg, type}: never echo the input (it may be a secret)."""
    return [
        {
            "loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "value_error")),
        }
        for e in raw
    ]


# A `+` in a query string means a space: an offset such as `+01:00` sent unencoded arrives
# as ` 01:00` right after the time.
_UNENCODED_OFFSET = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}([.,]\d+)?)? \d{2}(:?\d{2})?$"
)
OFFSET_HINT = (
    "A `+` in a query string arrives as a space: encode `+` as `%2B` or use `Z` (UTC),"
    " e.g. `2026-01-01T00:00:00%2B01:00` or `2026-01-01T00:00:00Z`."
)
FORM_HINT = (
    "This operation takes a form: send `application/x-www-form-urlencoded`"
    " (`username=...&password=...`), not JSON."
)
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _takes_form(request: Request) -> bool:
    body = getattr(request.scope.get("route"), "body_field", None)
    return isinstance(getattr(body, "field_info", None), Form)


def validation_hint(request: Request, raw: list[Any]) -> str | None:
    """What to do about two common mistakes whose plain validation errors do not say it: an
    unencoded `+` offset in a query, and JSON (or nothing) sent to a form operation."""
    for error in raw:
        loc, value = error.get("loc", ()), error.get("input")
        query = bool(loc) and loc[0] == "query"
        if query and isinstance(value, str) and _UNENCODED_OFFSET.match(value):
            return OFFSET_HINT
    content_type = request.headers.get("content-type", "").lower()
    body_errors = any(e.get("loc", ())[:1] == ("body",) for e in raw)
    if body_errors and _takes_form(request) and not content_type.startswith(_FORM_TYPES):
        return FORM_HINT
    return None


async def _validation_error(request: Request, exc: Exception) -> Response:
    exc = cast(RequestValidationError, exc)
    raw = list(exc.errors())
    # A body that is not JSON at all is a 400 malformed_body, not a field problem.
    if any(e.get("type") == "json_invalid" for e in raw):
        return error_response(
            request, 400, errors.MalformedBody.code, errors.MalformedBody.default_message
        )
    details = validation_details(raw)
    hint = validation_hint(request, raw)
    message = "The request is not valid." + (f" {hint}" if hint else "")
    return error_response(request, 422, "validation_failed", message, details)


async def _dependency_down(request: Request, exc: Exception) -> Response:
    """The database (or another dependency) cannot be reached: 503, retry later."""
    if isinstance(exc, DBAPIError) and not isinstance(exc, OperationalError | InterfaceError):
        return await _unhandled(request, exc)
    return _unavailable(request, exc)


def _unavailable(request: Request, exc: Exception) -> Response:
    log.warning("dependency_unavailable", error=type(exc).__name__)
    unavailable = errors.Unavailable()
    return error_response(
        request, 503, unavailable.code, unavailable.message, headers=unavailable.headers
    )


# What a dependency that cannot be reached raises: a lost or refused database connection
# (asyncpg's connect errors reach us untranslated, as OSError), a pool or query timing out.
DEPENDENCY_DOWN: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    SqlTimeoutError,
    OSError,
    TimeoutError,
)


def _sqlstate(exc: Exception) -> str:
    source: Any = exc.orig if isinstance(exc, DBAPIError) else exc
    state = getattr(source, "sqlstate", None)
    return state if isinstance(state, str) else ""


# Postgres is away rather than refusing the request: a lost or refused connection (class
# 08), a server shutting down or starting up (57P01-57P03), no connection slot left (53300).
# The hot reads run on asyncpg directly, whose errors SQLAlchemy does not translate.
_AWAY = ("08", "57P0", "53300")


async def _database_error(request: Request, exc: Exception) -> Response:
    """SQLSTATE class 22, "data exception": Postgres (or the driver encoding a parameter)
    refused a value the request carried that validation let through — a NUL character in
    text or JSON, a time or number out of the column's range. The request is invalid: 422,
    on every route of every app, instead of a validator on each field. Postgres away: 503.
    Anything else: 500."""
    state = _sqlstate(exc)
    if state.startswith(_AWAY) and not isinstance(exc, DBAPIError):
        return _unavailable(request, exc)
    if not state.startswith("22"):
        return await _unhandled(request, exc)
    log.warning("unstorable_value", sqlstate=state, route=route_template(request.scope))
    return error_response(
        request,
        422,
        errors.ValidationFailed.code,
        "The request holds a value that cannot be stored or compared (a NUL character, or a"
        " number or time out of range).",
        [{"loc": ["request"], "msg": "Unsupported value.", "type": "value_error"}],
    )


async def _unhandled(request: Request, exc: Exception) -> Response:
    log.error("unhandled_error", exc_info=exc, route=route_template(request.scope))
    return error_response(request, 500, "internal_error", "Internal server error.")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(errors.AppError, _app_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for down in DEPENDENCY_DOWN:
        app.add_exception_handler(down, _dependency_down)
    for refused in (DBAPIError, asyncpg.PostgresError):
        app.add_exception_handler(refused, _database_error)
    app.add_exception_handler(Exception, _unhandled)


def error_responses(*error_types: type[errors.AppError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for the errors a route can answer, all in the envelope."""
    out: dict[int | str, dict[str, Any]] = {}
    for err in error_types:
        entry = out.setdefault(err.status_code, {"model": ErrorEnvelope, "description": ""})
        codes = {*entry["description"].split(", ")} - {""} | {f"`{err.code}`"}
        entry["description"] = ", ".join(sorted(codes))
    return out
