"""The ingest app's dependencies: the calling API key (scoped, rate limited) and the
parsed body of a push.

Checks run in the order 401 (no, bad, revoked or expired key, suspended organization) →
403 (the key lacks the scope) → 429 (the key's rate limit) → 415/413/400/422 (the body).
A key lookup is one SHA-256 and one indexed read (cached a few seconds, never argon2).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

import structlog
from fastapi import Depends, Header, Path, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from milepost_common.db import Database
from milepost_common.domain.api_keys.models import Scope
from milepost_common.domain.ingest_batches import service as batch_service
from milepost_common.domain.ingest_batches.models import IngestBatch
from milepost_common.domain.principals import Principal
from milepost_common.errors import Forbidden, Unauthorized
from milepost_common.logging import get_logger
from milepost_common.ratelimit import effective_rate
from milepost_common.web.middleware import request_id_of
from milepost_ingest import body as batch_body
from milepost_ingest.context import IngestContext
from milepost_ingest.osmand import OsmandFix, decode_json, decode_params
from milepost_ingest.unavailable import database_errors

log = get_logger("milepost.ingest")

INGEST_SCOPES = frozenset({Scope.INGEST.value})
OSMAND_SCOPES = frozenset({Scope.INGEST.value, Scope.INGEST_OSMAND.value})
OSMAND_MAX_BODY_BYTES = 64 * 1024


# The dependencies here are coroutines on purpose: FastAPI runs a plain `def` dependency in
# a worker thread, a hop that cost measurable CPU per push (bench/ingest).
async def get_context(conn: HTTPConnection) -> IngestContext:
    ctx: IngestContext = conn.app.state.ctx
    return ctx


def _database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


ContextDep = Annotated[IngestContext, Depends(get_context)]


# The two ways to present a key, declared so that the OpenAPI document names them (either
# one; they never raise: a missing key is ingest_key's 401, in the envelope).
_BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKeyBearer",
    description="`Authorization: Bearer <key>`: an API key with scope `ingest`.",
)
_X_API_KEY = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="ApiKeyHeader",
    description="An API key with scope `ingest`, when `Authorization` is not used.",
)


def presented_key(bearer: HTTPAuthorizationCredentials | None, header: str | None) -> str | None:
    """``Authorization: Bearer <key>``, else ``X-API-Key``."""
    if bearer is not None and bearer.credentials.strip():
        return bearer.credentials.strip()
    return (header or "").strip() or None


async def _authorize(
    request: Request, ctx: IngestContext, key: str | None, scopes: frozenset[str]
) -> Principal:
    if not key:
        raise Unauthorized("An API key is required (Authorization: Bearer <key>, or X-API-Key).")
    with database_errors():
        async with _database(request).sessionmaker() as session:
            principal = await ctx.resolver.from_api_key(session, key)
    if not principal.scopes & scopes:
        raise Forbidden(f"This API key lacks the scope `{sorted(scopes)[0]}`.")
    ip = request.client.host if request.client else None
    principal = principal.with_request(ip, request_id_of(request.scope))
    structlog.contextvars.bind_contextvars(org_id=str(principal.org_id))
    if principal.id is not None:
        ctx.usage.touch(principal.id)
    filters = await ctx.pipeline.org_filters(principal.require_org())
    rate = effective_rate(filters.ingest_rate_limit, ctx.settings.ingest.rate_limit)
    if rate is not None:
        await ctx.limiter.enforce(rate, "ingest", str(principal.id))
    return principal


async def ingest_key(
    request: Request,
    ctx: ContextDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
    header: Annotated[str | None, Security(_X_API_KEY)],
) -> Principal:
    """The caller's API key with scope ``ingest``. Raises Unauthorized (401), Forbidden
    (403), RateLimited (429, per key; fails open without Redis), Unavailable (503)."""
    return await _authorize(request, ctx, presented_key(bearer, header), INGEST_SCOPES)


async def osmand_key(
    request: Request,
    ctx: ContextDep,
    api_key: Annotated[str, Path(description="An API key with scope `ingest:osmand` or `ingest`.")],
) -> Principal:
    """The API key in the path (stock OsmAnd clients cannot set headers), with scope
    ``ingest:osmand`` or ``ingest``; raises as :func:`ingest_key` does."""
    return await _authorize(request, ctx, api_key, OSMAND_SCOPES)


IngestKey = Annotated[Principal, Depends(ingest_key)]
OsmandKey = Annotated[Principal, Depends(osmand_key)]


async def batch_length(request: Request, ctx: ContextDep) -> None:
    """A batch declared over the limit is refused (413) before the key is checked, as every
    app refuses a body too large before authentication."""
    batch_body.check_declared_length(request.headers.get("content-length"), ctx.limits)


async def batch_submission(
    request: Request,
    ctx: ContextDep,
    _length: Annotated[None, Depends(batch_length)],
    _: IngestKey,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            pattern=r"^[\x21-\x7e]+$",
            description="Repeat a push safely: within 24 h the same key and body answer the "
            "first response (`Idempotent-Replayed: true`); another body → 409.",
        ),
    ] = None,
) -> batch_service.Submission:
    """The body read within its limits and split into items, after the key is checked.
    Raises UnsupportedMediaType (415), PayloadTooLarge/BatchTooLarge (413), MalformedBody
    (400), ValidationFailed (422: no positions)."""
    received_at = datetime.now(UTC)
    headers = request.headers
    source = batch_body.batch_source(headers.get("content-type"))
    gzip = batch_body.is_gzip(headers.get("content-encoding"))
    data = await batch_body.read_body(request.stream(), gzip=gzip, limits=ctx.limits)
    data = batch_body.without_bom(data)
    parsed = batch_body.parse_items(data, source, ctx.limits.max_items)
    return batch_service.Submission(
        source=source,
        items=parsed.items,
        raws=parsed.raws,
        received_at=received_at,
        idempotency_key=idempotency_key,
        body_hash=batch_body.body_hash(source, data) if idempotency_key else None,
    )


SubmissionDep = Annotated[batch_service.Submission, Depends(batch_submission)]


_OSMAND_LIMITS = batch_body.BodyLimits(OSMAND_MAX_BODY_BYTES, OSMAND_MAX_BODY_BYTES, 1)


async def osmand_length(request: Request) -> None:
    """An OsmAnd body declared over its limit is refused before the key is checked."""
    batch_body.check_declared_length(request.headers.get("content-length"), _OSMAND_LIMITS)


async def osmand_fix(
    request: Request, _length: Annotated[None, Depends(osmand_length)], _: OsmandKey
) -> OsmandFix:
    """The fix of an OsmAnd request: query string (any method), form body or the JSON body
    of the Traccar Client. Raises DeviceIdMissing (400) and MalformedBody (400)."""
    received_at = datetime.now(UTC)
    headers = request.headers
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    params = list(request.query_params.multi_items())
    if media in ("application/json", "application/x-www-form-urlencoded"):
        data = await batch_body.read_body(
            request.stream(),
            gzip=batch_body.is_gzip(headers.get("content-encoding")),
            limits=_OSMAND_LIMITS,
        )
        if media == "application/json":
            return decode_json(batch_body.parse_json(data), received_at)
        params += batch_body.parse_form(data)
    return decode_params(params, received_at)


OsmandFixDep = Annotated[OsmandFix, Depends(osmand_fix)]


async def load_batch(batch_id: uuid.UUID, principal: IngestKey, request: Request) -> IngestBatch:
    """The batch, if it belongs to the key's organization; raises BatchNotFound (404)."""
    with database_errors():
        async with _database(request).sessionmaker() as session:
            return await batch_service.get_batch(session, principal, batch_id)


BatchDep = Annotated[IngestBatch, Depends(load_batch)]
