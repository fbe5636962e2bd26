"""Who is using the console: the session cookie, the operator behind it, CSRF checks."""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

import structlog
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from milepost_admin.console.sessions import ConsoleSession, SessionStore
from milepost_admin.context import AdminContext
from milepost_admin.deps import TOKEN_URL, ContextDep, current_operator
from milepost_common.domain.operators import service as operator_service
from milepost_common.domain.principals import Principal
from milepost_common.domain.sessions import service as sessions
from milepost_common.domain.users.models import PlatformRole, User
from milepost_common.errors import Forbidden, Unauthorized
from milepost_common.web.deps import ClientIpDep, SessionDep
from milepost_common.web.middleware import request_id_of

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


class LoginRequired(Exception):
    """No live console session: the browser is sent to the login page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class CsrfRejected(Forbidden):
    default_message = "The form expired or did not come from this console; reload and retry."


@dataclass(frozen=True, slots=True)
class Console:
    principal: Principal
    user: User
    record: ConsoleSession
    token: str

    def can(self, minimum: PlatformRole) -> bool:
        role = self.principal.platform_role
        return role is not None and PlatformRole(role).rank >= minimum.rank


def get_store(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.ctx.console_sessions
    return store


StoreDep = Annotated[SessionStore, Depends(get_store)]


def _here(request: Request) -> str:
    query = f"?{request.url.query}" if request.url.query else ""
    return quote(request.url.path + query, safe="/")  # one query parameter, all of it


async def live_session(
    session: AsyncSession, store: SessionStore, token: str | None
) -> tuple[ConsoleSession, User] | None:
    """The session of the cookie's ``token`` and its operator, or None: unknown or expired,
    or (ended here) its operator deactivated, or the session begun before the operator's
    sessions were ended. Every door of the console (its pages, the tables) asks this."""
    record = await store.get(token) if token else None
    if token is None or record is None:
        return None
    user = await operator_service.find_operator(session, record.user_id)
    if user is None or not user.is_active or record.begun_before(user.sessions_ended_at):
        await store.delete(token)
        return None
    return record, user


async def find_console(
    request: Request, session: AsyncSession, ctx: AdminContext, store: SessionStore, ip: str
) -> Console | None:
    """The operator of the request's live session, re-checked in the database; None when
    there is none (a session of a deactivated operator, or begun before the operator's
    sessions were ended, is ended)."""
    token = request.cookies.get(ctx.settings.admin.session_cookie)
    live = await live_session(session, store, token)
    if token is None or live is None:
        return None
    record, user = live
    principal = sessions.principal_of(user, ip=ip, request_id=request_id_of(request.scope))
    return Console(principal, user, record, token)


async def console_operator(
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    store: StoreDep,
    ip: ClientIpDep,
) -> Console:
    """The operator of a live session, re-checked in the database on every request;
    raises LoginRequired (a redirect to the login page) otherwise."""
    console = await find_console(request, session, ctx, store, ip)
    if console is None:
        raise LoginRequired(_here(request))
    return console


ConsoleDep = Annotated[Console, Depends(console_operator)]

_bearer = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)


async def support_or_console(
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    store: StoreDep,
    ip: ClientIpDep,
    token: Annotated[str | None, Depends(_bearer)],
) -> Principal:
    """An operator with at least the support role, by admin bearer token or, without one,
    by the console's session cookie: the console's own scripts (the map) read JSON routes
    that take this. Only for reads: a cookie never authorizes a change without CSRF.
    Raises Unauthorized (401), Forbidden (403) or RateLimited (429) as the token routes do."""
    if token:
        principal = await current_operator(request, session, ctx, ip, token)
    else:
        console = await find_console(request, session, ctx, store, ip)
        if console is None:
            raise Unauthorized()
        principal = console.principal
        await ctx.limiter.enforce(ctx.settings.admin.rate_limit, "admin", str(principal.id))
        structlog.contextvars.bind_contextvars(user_id=str(principal.id))
    principal.require_platform_role(PlatformRole.SUPPORT)
    return principal


SupportOrConsole = Annotated[Principal, Depends(support_or_console)]


def _csrf_ok(expected: str, form: FormData, request: Request) -> bool:
    sent = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    return isinstance(sent, str) and hmac.compare_digest(sent.encode(), expected.encode())


def _writer(minimum: PlatformRole) -> Callable[..., Awaitable[Console]]:
    async def check(request: Request, console: ConsoleDep) -> Console:
        if not _csrf_ok(console.record.csrf, await request.form(), request):
            raise CsrfRejected()
        console.principal.require_platform_role(minimum)
        return console

    return check


ConsoleOperator = Annotated[Console, Depends(_writer(PlatformRole.OPERATOR))]
ConsoleSuperadmin = Annotated[Console, Depends(_writer(PlatformRole.SUPERADMIN))]
ConsoleAnyWriter = Annotated[Console, Depends(_writer(PlatformRole.SUPPORT))]


def parse_uuid(raw: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw) if raw else None
    except ValueError:
        return None
