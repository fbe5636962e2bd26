"""Input Postgres cannot store, answered as a 422 instead of a 500.

Text with a NUL character (``\\u0000`` in JSON, ``%00`` in a query) passes validation — it
is a valid string — but Postgres refuses it in ``text`` and ``jsonb`` (SQLSTATE 22021,
22P05). The fuzzer found it; every field of every route is covered here, at the one place
the database's refusal surfaces, rather than by a validator on each string field.
"""

from __future__ import annotations

from typing import Any

import asyncpg  # type: ignore[import-untyped]
from fastapi import FastAPI, Request
from fastapi.responses import Response
from sqlalchemy.exc import DBAPIError

from milepost_common.logging import get_logger
from milepost_common.web.errors import error_response

log = get_logger("milepost.api.errors")

UNSTORABLE_TEXT = frozenset({"22021", "22P05"})


def _sqlstate(exc: Exception) -> str | None:
    source: Any = exc.orig if isinstance(exc, DBAPIError) else exc
    state = getattr(source, "sqlstate", None)
    return state if isinstance(state, str) else None


async def _database_error(request: Request, exc: Exception) -> Response:
    if _sqlstate(exc) in UNSTORABLE_TEXT:
        return error_response(
            request,
            422,
            "validation_failed",
            "The request contains characters that cannot be stored (such as NUL).",
            [{"loc": ["request"], "msg": "Unsupported character.", "type": "value_error"}],
        )
    log.error(
        "unhandled_error", exc_info=exc, route=getattr(request.scope.get("route"), "path", None)
    )
    return error_response(request, 500, "internal_error", "Internal server error.")


def install(app: FastAPI) -> None:
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(asyncpg.PostgresError, _database_error)
