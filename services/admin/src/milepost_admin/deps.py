"""The admin app's dependencies: operator principals by platform role, and its context.

The JSON API takes an admin bearer token (``aud=admin``): public API tokens and API keys
are refused with 401. The principal is re-resolved on every request, so a deactivated
operator stops at the next one. Roles: ``support`` reads, ``operator`` also writes,
``superadmin`` also manages operators.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import structlog
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from milepost_admin.context import AdminContext
from milepost_common.auth import Realm
from milepost_common.domain.principals import Principal
from milepost_common.domain.users.models import PlatformRole
from milepost_common.errors import Forbidden, RateLimited, Unauthorized
from milepost_common.web.deps import ClientIpDep, SessionDep
from milepost_common.web.middleware import request_id_of

TOKEN_URL = "/admin/v1/auth/token"  # noqa: S105 - a path, not a secret

# What every route behind an operator dependency may answer (for its OpenAPI responses):
# no or a bad token, a role too low, the operator's rate limit.
AUTH_ERRORS = (Unauthorized, Forbidden, RateLimited)


def get_context(request: Request) -> AdminContext:
    ctx: AdminContext = request.app.state.ctx
    return ctx


ContextDep = Annotated[AdminContext, Depends(get_context)]

_bearer = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)


async def current_operator(
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    ip: ClientIpDep,
    token: Annotated[str | None, Depends(_bearer)],
) -> Principal:
    """An active operator holding a valid admin token; raises Unauthorized (401) otherwise
    and RateLimited (429) over the per-operator rate."""
    if not token:
        raise Unauthorized()
    principal = await ctx.resolver.from_access_token(session, token, Realm.ADMIN)
    await ctx.limiter.enforce(ctx.settings.admin.rate_limit, "admin", str(principal.id))
    structlog.contextvars.bind_contextvars(user_id=str(principal.id))
    return principal.with_request(ip, request_id_of(request.scope))


def _at_least(minimum: PlatformRole) -> Callable[..., Awaitable[Principal]]:
    async def check(principal: Annotated[Principal, Depends(current_operator)]) -> Principal:
        principal.require_platform_role(minimum)
        return principal

    check.__doc__ = f"An operator with at least the {minimum.value} role; else 403."
    return check


SupportUser = Annotated[Principal, Depends(_at_least(PlatformRole.SUPPORT))]
OperatorUser = Annotated[Principal, Depends(_at_least(PlatformRole.OPERATOR))]
SuperadminUser = Annotated[Principal, Depends(_at_least(PlatformRole.SUPERADMIN))]
