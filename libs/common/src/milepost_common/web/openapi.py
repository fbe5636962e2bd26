"""What every app's OpenAPI document says besides each route's own answers, added once here.

Routes declare their own errors (``error_responses``). What any operation can meet whatever
its route is documented by the kit, so that a generated client knows it:

- 400 ``malformed_body`` on every operation that takes a body (a body that cannot be parsed
  is refused before anything else reads it);
- 422 ``validation_failed`` in the envelope, where FastAPI would document its own
  ``HTTPValidationError`` body (which no app answers: the error handlers render the envelope);
- 503 ``unavailable`` in the envelope, with ``Retry-After``: the database (or Redis) cannot
  be reached, from any route;
- the gateway's own answers, in plain text and not the envelope: 429 from its per-address
  rate limit (with ``Retry-After``), 502, 503 and 504 while an app is down or slow.

Also the export of a document to ``docs/openapi/<app>.json`` that each app's
``openapi_export`` module runs (``make openapi``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI
from pydantic.json_schema import models_json_schema

from milepost_common import errors
from milepost_common.web.errors import ErrorEnvelope

_REF = "#/components/schemas/"
_ENVELOPE: dict[str, Any] = {"schema": {"$ref": _REF + "ErrorEnvelope"}}
_PLAIN_TEXT: dict[str, Any] = {"schema": {"type": "string"}}
_RETRY_AFTER: dict[str, Any] = {
    "Retry-After": {
        "description": "Seconds to wait before trying again (when sent).",
        "schema": {"type": "integer", "minimum": 0},
    }
}
_FASTAPI_VALIDATION = _REF + "HTTPValidationError"
_GATEWAY = "The gateway's own answer is plain text, not the envelope"
MALFORMED_BODY = (errors.MalformedBody.code, "the body cannot be parsed")
UNAVAILABLE = (errors.Unavailable.code, "a dependency cannot be reached, retry after `Retry-After`")
RATE_LIMITED = f"{_GATEWAY}: its per-address rate limit, with `Retry-After`"
DOWN = f"{_GATEWAY}: the app is down or restarting"
BAD_GATEWAY = f"{_GATEWAY}: the app did not answer the gateway"
GATEWAY_TIMEOUT = f"{_GATEWAY}: the app did not answer the gateway in time"


def add_common_responses(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with the answers of the module docstring on every operation (in place;
    running it again changes nothing)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    if "ErrorEnvelope" not in components:
        _, definitions = models_json_schema(
            [(ErrorEnvelope, "serialization")], ref_template=_REF + "{model}"
        )
        components.update(definitions.get("$defs", {}))
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses: dict[str, Any] = operation["responses"]
            _envelope_for_validation(responses)
            if "requestBody" in operation:
                _merge(responses, "400", {"application/json": _ENVELOPE}, code=MALFORMED_BODY)
            plain = {"text/plain": _PLAIN_TEXT}
            _merge(responses, "429", plain, gateway=RATE_LIMITED, headers=_RETRY_AFTER)
            _merge(responses, "502", plain, gateway=BAD_GATEWAY)
            _merge(
                responses,
                "503",
                {"application/json": _ENVELOPE, **plain},
                code=UNAVAILABLE,
                gateway=DOWN,
                headers=_RETRY_AFTER,
            )
            _merge(responses, "504", plain, gateway=GATEWAY_TIMEOUT)
    if _FASTAPI_VALIDATION.encode() not in orjson.dumps(schema.get("paths", {})):
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
    return schema


def _envelope_for_validation(responses: dict[str, Any]) -> None:
    media = responses.get("422", {}).get("content", {}).get("application/json", {})
    if media.get("schema", {}).get("$ref") == _FASTAPI_VALIDATION:
        responses["422"] = {
            "description": f"`{errors.ValidationFailed.code}`",
            "content": {"application/json": _ENVELOPE},
        }


def _merge(
    responses: dict[str, Any],
    status: str,
    content: dict[str, Any],
    *,
    code: tuple[str, str] | None = None,
    gateway: str = "",
    headers: dict[str, Any] | None = None,
) -> None:
    """Add to what the route documents for ``status``, never replacing any of it: its own
    codes and JSON body stay. ``code`` is the app's (code, meaning), ``gateway`` what the
    gateway's own plain-text answer means."""
    response = responses.setdefault(status, {"description": ""})
    parts = [response["description"]] if response["description"] else []
    if code is not None and f"`{code[0]}`" not in response["description"]:
        parts.append(f"`{code[0]}`: {code[1]}")
    if gateway and gateway not in response["description"]:
        parts.append(gateway)
    if len(parts) > 1 or not response["description"]:
        response["description"] = ". ".join(part.rstrip(".") for part in parts) + "."
    media = response.setdefault("content", {})
    for media_type, value in content.items():
        media.setdefault(media_type, value)
    for name, header in (headers or {}).items():
        response.setdefault("headers", {}).setdefault(name, header)


def document_common_responses(app: FastAPI) -> None:
    """Add :func:`add_common_responses` to ``app``'s OpenAPI generation."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        return add_common_responses(generate())

    # FastAPI's documented way to extend the schema; it caches what `generate` returns.
    app.openapi = openapi  # type: ignore[method-assign]


def render(schema: dict[str, Any]) -> bytes:
    """The committed form of a document: indented, keys sorted, one final newline."""
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def export(document: Callable[[], dict[str, Any]], default_path: Path) -> None:
    """The command line of an app's ``openapi_export``: write its document to the path given
    as the first argument, else to ``default_path``."""
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else default_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(render(document()))
    print(f"wrote {path}")  # noqa: T201 - a command's one line of output
