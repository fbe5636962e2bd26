"""Who is using the console: the session cookie, the operator behind it, CSRF checks."""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from starlette.datastructures import FormData

from milepost_admin.console.sessions import ConsoleSession, SessionStore
from milepost_admin.deps import ServicesDep
from milepost_common.domain.principals import Principal
from milepost_common.domain.sessions import service as sessions
from milepost_common.domain.users.models import PlatformRole, User
from milepost_common.errors import Forbidden
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
    store: SessionStore = request.app.state.console_sessions
    return store


StoreDep = Annotated[SessionStore, Depends(get_store)]


def _here(request: Request) -> str:
    query = f"?{request.url.query}" if request.url.query else ""
    return quote(request.url.path + query, safe="/?=&")


async def console_operator(
    request: Request,
    session: SessionDep,
    services: ServicesDep,
    store: StoreDep,
    ip: ClientIpDep,
) -> Console:
    """The operator of a live session, re-checked in the database on every request;
    raises LoginRequired (a redirect to the login page) otherwise."""
    token = request.cookies.get(services.settings.admin.session_cookie)
    record = await store.get(token) if token else None
    if token is None or record is None:
        raise LoginRequired(_here(request))
    user = await session.get(User, record.user_id)
    if user is None or not user.is_active or user.platform_role is None:
        await store.delete(token)
        raise LoginRequired(_here(request))
    principal = sessions.principal_of(user, ip=ip, request_id=request_id_of(request.scope))
    return Console(principal, user, record, token)


ConsoleDep = Annotated[Console, Depends(console_operator)]


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
