"""The api app's dependencies: who is calling (with their organization), paging, windows.

``CurrentUser`` is the only way a route learns about its caller, and it always carries the
caller's organization: the services take the organization from it, never from the client.
Role checks (``ManagerUser``, ``OwnerUser``) run before anything loads a resource, so the
order of answers is 401 → 403 → 404.
"""

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any

import structlog
from fastapi import Depends, Query, Request
from fastapi.security import OAuth2PasswordBearer
from pydantic import AwareDatetime, BeforeValidator, Field
from starlette.requests import HTTPConnection

from milepost_api.context import ApiContext
from milepost_common.auth import Realm
from milepost_common.db import Database
from milepost_common.domain import paging
from milepost_common.domain.principals import Principal
from milepost_common.domain.users.models import OrgRole
from milepost_common.errors import RateLimited, Unauthorized, ValidationFailed
from milepost_common.pagination import DEFAULT_LIMIT, MAX_LIMIT
from milepost_common.ratelimit import effective_rate
from milepost_common.web.errors import error_responses
from milepost_common.web.middleware import request_id_of

TOKEN_URL = "/api/v1/auth/token"  # noqa: S105 - a path
# What every route behind CurrentUser may answer (422 in the envelope, not FastAPI's own
# schema), documented once per router.
AUTHENTICATED = error_responses(Unauthorized, RateLimited, ValidationFailed)


def context_of(conn: HTTPConnection) -> ApiContext:
    """The app's context. Called directly by the hottest routes and by ``current_user`` (a
    dependency costs FastAPI a resolution per request)."""
    ctx: ApiContext = conn.app.state.ctx
    return ctx


async def get_context(conn: HTTPConnection) -> ApiContext:
    return context_of(conn)


ContextDep = Annotated[ApiContext, Depends(get_context)]

bearer = OAuth2PasswordBearer(
    tokenUrl=TOKEN_URL,
    auto_error=False,
    scheme_name="BearerToken",
    description="An access token from `POST /api/v1/auth/token` (15 minutes, `aud=api`).",
)


async def current_user(
    request: Request, token: Annotated[str | None, Depends(bearer)]
) -> Principal:
    """The caller, a member of an active organization (checked on every request, cached a
    few seconds). Raises Unauthorized (401) and RateLimited (429, per user: the
    organization's `api_rate_limit`, else the service default).

    Reads the app's context and the client address itself rather than through more
    dependencies, and opens a session only to resolve a token it has not seen: this runs
    on every request."""
    if not token:
        raise Unauthorized()
    ctx = context_of(request)

    async def resolve() -> Principal:
        db: Database = request.app.state.db
        async with db.sessionmaker() as session:
            return await ctx.resolver.from_access_token(session, token, Realm.API)

    principal = await ctx.tokens.get_or_load(token, resolve, ttl_of=_until_expiry)
    ip = request.client.host if request.client else "unknown"
    principal = principal.with_request(ip, request_id_of(request.scope))
    structlog.contextvars.bind_contextvars(org_id=str(principal.org_id), user_id=str(principal.id))
    await charge_request(ctx, principal)
    return principal


async def charge_request(ctx: ApiContext, principal: Principal) -> None:
    """Spend one request of the user's rate limit (its organization's plan, else the api's):
    every HTTP request, and each stream message that makes the server work. Raises
    RateLimited."""
    rate = effective_rate(principal.rate_limit, ctx.settings.api.rate_limit)
    if rate is not None:
        await ctx.limiter.enforce(rate, "api-user", str(principal.id))


def _until_expiry(principal: Principal) -> float | None:
    """Seconds the token has left (a principal is never kept past its token's expiry)."""
    if principal.token_expires_at is None:
        return 0.0
    return (principal.token_expires_at - datetime.now(UTC)).total_seconds()


CurrentUser = Annotated[Principal, Depends(current_user, scope="function")]


async def manager_user(user: CurrentUser) -> Principal:
    """The caller, if at least a manager; raises Forbidden (403) otherwise."""
    user.require_role(OrgRole.MANAGER)
    return user


async def owner_user(user: CurrentUser) -> Principal:
    """The caller, if an owner; raises Forbidden (403) otherwise."""
    user.require_role(OrgRole.OWNER)
    return user


ManagerUser = Annotated[Principal, Depends(manager_user, scope="function")]
OwnerUser = Annotated[Principal, Depends(owner_user, scope="function")]


def page_params(
    sortable: tuple[str, ...], default_sort: str, *, max_limit: int = MAX_LIMIT
) -> Callable[..., Awaitable[paging.PageRequest]]:
    """A dependency reading ``limit``, ``cursor`` and an allow-listed ``sort``."""
    pattern = "^-?(" + "|".join(sortable) + ")$"

    async def read_page(
        limit: Annotated[
            int, Query(ge=1, le=max_limit, description=f"Page size, at most {max_limit}.")
        ] = DEFAULT_LIMIT,
        cursor: Annotated[
            str | None,
            Query(max_length=512, description="`next_cursor` of the previous page."),
        ] = None,
        sort: Annotated[
            str | None,
            Query(
                pattern=pattern,
                description=(
                    f"One of {', '.join(sortable)}; prefix `-` for descending"
                    f" (default `{default_sort}`, ties broken by id)."
                ),
            ),
        ] = None,
    ) -> paging.PageRequest:
        return paging.PageRequest(
            limit=limit, cursor=cursor, sort=paging.parse_sort(sort, sortable, default_sort)
        )

    return read_page


# A list by creation time only (the organization's keys, webhooks).
ByCreation = Annotated[paging.PageRequest, Depends(page_params(("created_at",), "created_at"))]


DATE_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]*)?")


def _not_a_number(value: Any) -> Any:
    # Pydantic reads a string of digits as Unix seconds: `from=20260329`, an ISO 8601 date in
    # its basic form, was 1970-08-23 and answered with nothing instead of a 422.
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        raise ValueError("Input should be ISO 8601 with an offset, not a number")
    return value


def _date_text_only(value: Any) -> Any:
    # Pydantic reads a naive midnight (`2026-03-29T00:00:00`) as a date, and any other naive
    # time is refused: a date is `YYYY-MM-DD` alone, a time needs its offset.
    if isinstance(value, str) and DATE_TEXT.fullmatch(value) is None:
        raise ValueError("Input should be a date (YYYY-MM-DD) or a time with an offset")
    return value


# An instant with its offset (ISO 8601), never a number of seconds.
IsoInstant = Annotated[AwareDatetime, BeforeValidator(_not_a_number)]
# That, or a date (midnight in the organization's time zone: the reports).
InstantOrDate = Annotated[
    IsoInstant | Annotated[date, BeforeValidator(_date_text_only)],
    Field(union_mode="left_to_right"),
]


async def read_window(
    start: Annotated[
        IsoInstant | None,
        Query(alias="from", description="Inclusive lower bound (ISO 8601 with offset)."),
    ] = None,
    end: Annotated[
        IsoInstant | None,
        Query(alias="to", description="Exclusive upper bound (ISO 8601 with offset)."),
    ] = None,
) -> paging.Window:
    return paging.Window(start, end)


WindowDep = Annotated[paging.Window, Depends(read_window)]
