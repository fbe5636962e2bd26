"""Operators' own account pages: accept an invitation, choose a new password from a reset
link (the links of ``links.operator_invite_url`` / ``operator_reset_url``). The token is in
the link's fragment; ``static/account.js`` puts it in the form, which posts it in its body.
Only operators' links redeem here; organizations' users have the api's account pages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from milepost_admin.console.deps import StoreDep
from milepost_admin.console.render import page
from milepost_admin.console.routing import ConsoleRoute
from milepost_admin.deps import ContextDep
from milepost_admin.links import OPERATOR_INVITE_PATH, OPERATOR_RESET_PATH
from milepost_common.auth import Realm
from milepost_common.domain.sessions import service as sessions
from milepost_common.domain.sessions.errors import OneTimeTokenInvalid
from milepost_common.domain.sessions.models import TokenPurpose
from milepost_common.domain.users.schemas import MIN_PASSWORD_LENGTH
from milepost_common.web.deps import SessionDep

router = APIRouter(tags=["console"], include_in_schema=False, route_class=ConsoleRoute)
MAX_PASSWORD_LENGTH = 128
LINK_ERROR = "This link is invalid, expired (links last 48 hours), or was already used."
_PAGES = {
    TokenPurpose.INVITATION: (
        OPERATOR_INVITE_PATH,
        "Welcome to Milepost admin",
        "Choose the password of your operator account.",
    ),
    TokenPurpose.PASSWORD_RESET: (
        OPERATOR_RESET_PATH,
        "Choose a new password",
        "Choose a new password for your operator account.",
    ),
}


async def _account_page(
    request: Request,
    store: StoreDep,
    purpose: TokenPurpose,
    *,
    status_code: int = 200,
    **state: object,
) -> HTMLResponse:
    action, title, intro = _PAGES[purpose]
    context = {"title": title, "intro": intro, "action": action, "min_length": MIN_PASSWORD_LENGTH}
    return await page(
        request, store, None, "account.html", {**context, **state}, status_code=status_code
    )


def _password_problem(password: str, confirm: str) -> str | None:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        return f"The password needs {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters."
    if password != confirm:
        return "The two passwords differ."
    return None


async def _redeem(
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    store: StoreDep,
    purpose: TokenPurpose,
    token: str,
    password: str,
    confirm: str,
) -> HTMLResponse:
    if not token:
        return await _account_page(
            request, store, purpose, status_code=400, link_error="The link is incomplete."
        )
    problem = _password_problem(password, confirm)
    if problem is not None:
        # The answer's address has no fragment: the form keeps the token for the next try.
        return await _account_page(
            request, store, purpose, status_code=422, error=problem, token=token
        )
    try:
        await sessions.redeem_one_time_token(
            session, ctx.hasher, token, purpose, password, realm=Realm.ADMIN
        )
    except OneTimeTokenInvalid:
        # Raised before anything changed: the transaction has nothing to undo.
        return await _account_page(request, store, purpose, status_code=400, link_error=LINK_ERROR)
    return await _account_page(request, store, purpose, done=True)


Token = Annotated[str, Form(max_length=512)]
Password = Annotated[str, Form(max_length=1024)]


@router.get("/invitation", response_class=HTMLResponse)
async def invitation_form(request: Request, store: StoreDep) -> HTMLResponse:
    return await _account_page(request, store, TokenPurpose.INVITATION)


@router.post("/invitation", response_class=HTMLResponse)
async def invitation_submit(
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    store: StoreDep,
    password: Password,
    confirm: Password,
    token: Token = "",
) -> HTMLResponse:
    return await _redeem(
        request, session, ctx, store, TokenPurpose.INVITATION, token, password, confirm
    )


@router.get("/password-reset", response_class=HTMLResponse)
async def password_reset_form(request: Request, store: StoreDep) -> HTMLResponse:
    return await _account_page(request, store, TokenPurpose.PASSWORD_RESET)


@router.post("/password-reset", response_class=HTMLResponse)
async def password_reset_submit(
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    store: StoreDep,
    password: Password,
    confirm: Password,
    token: Token = "",
) -> HTMLResponse:
    return await _redeem(
        request, session, ctx, store, TokenPurpose.PASSWORD_RESET, token, password, confirm
    )
