"""Console login (password form or SSO) and logout."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from milepost_admin import login
from milepost_admin.console.deps import CSRF_FIELD, ConsoleAnyWriter, StoreDep
from milepost_admin.console.oidc import OAuthError, SingleSignOn
from milepost_admin.console.render import page, see_other
from milepost_admin.console.routing import ConsoleRoute
from milepost_admin.deps import ContextDep
from milepost_common.domain.audit import service as audit
from milepost_common.domain.operators import service as operator_service
from milepost_common.domain.operators import sso as sso_service
from milepost_common.domain.operators.errors import SsoLoginRefused
from milepost_common.domain.principals import Principal, PrincipalKind
from milepost_common.domain.sessions import service as sessions
from milepost_common.domain.sessions.errors import LoginFailed
from milepost_common.domain.users.models import PlatformRole, User
from milepost_common.errors import RateLimited
from milepost_common.logging import get_logger
from milepost_common.web.deps import ClientIpDep, SessionDep
from milepost_common.web.middleware import request_id_of

router = APIRouter(tags=["console"], include_in_schema=False, route_class=ConsoleRoute)
LOGIN_CSRF_COOKIE = "milepost_admin_login"
log = get_logger("milepost.admin.console")
SSO_INVALID = "the provider's answer was not accepted"
SSO_ERRORS = {
    "access_denied": "the provider refused the login",
    "mismatching_state": "the sign-in expired or began in another browser; try again",
}


def safe_next(raw: str | None) -> str:
    """Only paths of this console: never an open redirect."""
    if raw and raw.startswith("/admin/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return "/admin/"


async def _login_page(
    request: Request,
    ctx: ContextDep,
    store: StoreDep,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = await page(
        request,
        store,
        None,
        "login.html",
        {
            "login_csrf": token,
            "next": safe_next(request.query_params.get("next")),
            "error": error,
            "sso": ctx.settings.oidc.enabled,
            "sso_label": ctx.settings.oidc.button_label,
        },
        status_code=status_code,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=3600,
        path="/admin/login",
        httponly=True,
        samesite="strict",
        secure=ctx.settings.cookie_secure,
    )
    return response


async def _throttled_page(
    request: Request, ctx: ContextDep, store: StoreDep, exc: RateLimited
) -> HTMLResponse:
    """The login page saying the client's login budget is spent, and when to come back."""
    response = await _login_page(request, ctx, store, error=exc.message, status_code=429)
    response.headers.update(exc.headers)
    return response


async def _start_session(
    request: Request, ctx: ContextDep, store: StoreDep, user: User, method: str, next_path: str
) -> Response:
    """A new session in the cookie; the one the cookie named before (a login over a live
    session) is deleted, not left to idle out."""
    cookie = ctx.settings.admin.session_cookie
    if replaced := request.cookies.get(cookie):
        await store.delete(replaced)
    token, _ = await store.create(user.id, method)
    response = see_other(safe_next(next_path))
    response.set_cookie(
        cookie,
        token,
        max_age=ctx.settings.admin.session_ttl_s,
        path="/admin",
        httponly=True,
        samesite="lax",
        secure=ctx.settings.cookie_secure,
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/admin/login")
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, ctx: ContextDep, store: StoreDep) -> HTMLResponse:
    return await _login_page(request, ctx, store)


@router.post("/login", response_model=None)
async def login_submit(
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    store: StoreDep,
    ip: ClientIpDep,
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD)] = "",
    next_path: Annotated[str, Form(alias="next")] = "/admin/",
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected.encode(), csrf_token.encode()):
        return await _login_page(
            request, ctx, store, error="The form expired; try again.", status_code=403
        )
    try:
        user = await login.log_in(
            session,
            ctx,
            email,
            password,
            ip=ip,
            request_id=request_id_of(request.scope),
        )
    except LoginFailed as exc:
        return await _login_page(request, ctx, store, error=exc.message, status_code=401)
    except RateLimited as exc:
        return await _throttled_page(request, ctx, store, exc)
    return await _start_session(request, ctx, store, user, "password", next_path)


@router.post("/logout", response_model=None)
async def logout(
    console: ConsoleAnyWriter, session: SessionDep, ctx: ContextDep, store: StoreDep
) -> Response:
    await store.delete(console.token)
    await audit.record(
        session, console.principal, "auth.logout", target_type="realm", target_id="admin"
    )
    response = see_other("/admin/login")
    response.delete_cookie(ctx.settings.admin.session_cookie, path="/admin")
    return response


def _sso(request: Request) -> SingleSignOn | None:
    sso: SingleSignOn | None = request.app.state.sso
    return sso


@router.get("/login/sso", response_model=None)
async def sso_start(request: Request, ctx: ContextDep, store: StoreDep) -> Response:
    sso = _sso(request)
    if sso is None:
        return await _login_page(
            request, ctx, store, error="SSO is not configured.", status_code=404
        )
    request.session["next"] = safe_next(request.query_params.get("next"))
    return await sso.start(request, str(request.url_for("sso_callback")))


async def _sso_failed(
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    store: StoreDep,
    ip: str,
    email: str | None,
    reason: str,
) -> HTMLResponse:
    anonymous = Principal(
        PrincipalKind.OPERATOR,
        None,
        None,
        email or "unknown",
        ip=ip,
        request_id=request_id_of(request.scope),
    )
    await audit.record(
        session,
        anonymous,
        "auth.login_failed",
        target_type="realm",
        target_id="admin",
        diff={"method": "oidc", "reason": reason},
    )
    return await _login_page(
        request, ctx, store, error="Single sign-on failed: " + reason, status_code=401
    )


class _SsoFailed(Exception):
    """Why a callback was not accepted, and the email when the provider gave one."""

    def __init__(self, reason: str, email: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.email = email


async def _sso_operator(
    request: Request, session: SessionDep, sso: SingleSignOn
) -> tuple[dict[str, Any], sso_service.SsoIdentity, sso_service.SsoMatch]:
    """The provider's claims, its identity and the operator it names; raises _SsoFailed."""
    try:
        claims = await sso.finish(request)
    except OAuthError as exc:
        # The error and its description come from the callback's query, which anyone can
        # write into a link: the page and the audit say only which kind of failure it was.
        log.info("sso_refused", error=str(exc.error)[:100], description=str(exc.description)[:300])
        raise _SsoFailed(SSO_ERRORS.get(exc.error, SSO_INVALID)) from exc
    except httpx.HTTPError as exc:
        log.warning("sso_provider_error", error=type(exc).__name__)
        raise _SsoFailed("the provider did not answer") from exc
    try:
        identity = sso.identity(claims)
    except SsoLoginRefused as exc:
        raise _SsoFailed(exc.message) from exc
    try:
        return claims, identity, await sso_service.find_sso_operator(session, identity)
    except SsoLoginRefused as exc:
        raise _SsoFailed(exc.message, identity.email) from exc


@router.get("/login/sso/callback", response_model=None)
async def sso_callback(
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    store: StoreDep,
    ip: ClientIpDep,
) -> Response:
    sso = _sso(request)
    if sso is None:
        return await _login_page(
            request, ctx, store, error="SSO is not configured.", status_code=404
        )
    try:
        # Anyone can call the callback: its failures spend the client IP's login budget,
        # as wrong passwords do, so a flood of forged links cannot flood the audit log.
        async with ctx.throttle.ip_attempt(ip):
            claims, identity, match = await _sso_operator(request, session, sso)
    except RateLimited as exc:
        return await _throttled_page(request, ctx, store, exc)
    except _SsoFailed as exc:
        return await _sso_failed(request, session, ctx, store, ip, exc.email, exc.reason)
    user = match.user
    role_claim = ctx.settings.oidc.role_claim
    claimed = claims.get(role_claim) if role_claim else None
    if isinstance(claimed, str) and claimed in PlatformRole.__members__.values():
        system = Principal(
            PrincipalKind.SYSTEM, None, None, "oidc", ip=ip, request_id=request_id_of(request.scope)
        )
        await operator_service.change_operator_role(session, system, user, PlatformRole(claimed))
    await audit.record(
        session,
        sessions.principal_of(user, ip=ip, request_id=request_id_of(request.scope)),
        "auth.login",
        target_type="realm",
        target_id="admin",
        diff={
            "method": "oidc",
            "issuer": identity.issuer,
            "subject": identity.subject,
            "bound": match.bound_now,
        },
    )
    next_path = str(request.session.pop("next", "/admin/"))
    redirect: Response = await _start_session(request, ctx, store, user, "oidc", next_path)
    return redirect
