"""Sign-in for fleet owners' apps: password login, refresh rotation, logout, and the
redemption of invitation and password-reset links. The only routes without a bearer token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from fastapi.security import OAuth2PasswordRequestForm

from milepost_api.deps import ContextDep
from milepost_api.schemas import RedeemRequest, RefreshRequest, TokenPairRead
from milepost_common.auth import Realm
from milepost_common.domain.sessions import service as sessions
from milepost_common.domain.sessions.errors import (
    LoginFailed,
    OneTimeTokenInvalid,
    RefreshTokenInvalid,
)
from milepost_common.domain.sessions.models import TokenPurpose
from milepost_common.domain.users.models import User
from milepost_common.errors import RateLimited, ValidationFailed
from milepost_common.web.deps import ClientIpDep, SessionDep
from milepost_common.web.errors import error_responses
from milepost_common.web.middleware import request_id_of

router = APIRouter(prefix="/v1/auth", tags=["auth"])


def _pair(pair: sessions.TokenPair) -> TokenPairRead:
    assert pair.refresh_token is not None  # noqa: S101 - issued with_refresh
    return TokenPairRead(
        access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in
    )


async def _throttled_login(
    ctx: ContextDep, session: SessionDep, email: str, password: str, ip: str, request_id: str
) -> User:
    """The attempt is counted for this email and IP before the password is checked (429 when
    either had too many); a successful login releases it."""
    async with ctx.login_throttle.attempt(email, ip):
        return await sessions.authenticate(
            session, ctx.hasher, Realm.API, email, password, ip=ip, request_id=request_id
        )


@router.post(
    "/token",
    summary="Log in with email and password",
    responses=error_responses(LoginFailed, RateLimited, ValidationFailed),
)
async def create_token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    ip: ClientIpDep,
) -> TokenPairRead:
    """OAuth2 password grant (form fields `username` = email, `password`): an access token
    (15 minutes) and a refresh token (30 days). Repeated failures for an email or from an
    address answer 429 for a while; the answer never tells whether the email exists."""
    user = await _throttled_login(
        ctx, session, form.username, form.password, ip, request_id_of(request.scope)
    )
    pair = await sessions.issue_token_pair(session, ctx.codec, ctx.settings.auth, user, Realm.API)
    return _pair(pair)


@router.post(
    "/refresh",
    summary="Exchange a refresh token for a new pair",
    responses=error_responses(RefreshTokenInvalid, ValidationFailed),
)
async def refresh_token(
    body: RefreshRequest, request: Request, session: SessionDep, ctx: ContextDep, ip: ClientIpDep
) -> TokenPairRead:
    """Rotation: the presented token dies and a new pair comes back. Presenting an already
    rotated token again revokes its whole family (every session descended from that login)."""
    pair = await sessions.refresh(
        session,
        ctx.codec,
        ctx.settings.auth,
        body.refresh_token,
        ip=ip,
        request_id=request_id_of(request.scope),
    )
    return _pair(pair)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke a refresh token",
    responses=error_responses(ValidationFailed),
)
async def logout(body: RefreshRequest, session: SessionDep) -> None:
    """Revokes the token's family; idempotent (an unknown token is accepted silently). The
    access token in hand stays valid until it expires (at most 15 minutes)."""
    await sessions.logout(session, body.refresh_token)


@router.post(
    "/invitations/accept",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Accept an invitation by choosing a password",
    responses=error_responses(OneTimeTokenInvalid, ValidationFailed),
)
async def accept_invitation(body: RedeemRequest, session: SessionDep, ctx: ContextDep) -> None:
    """Single use, valid 48 hours; then log in with `POST /auth/token`. The invitation link
    opens the page `/api/account/invitation`, which calls this."""
    await sessions.redeem_one_time_token(
        session,
        ctx.hasher,
        body.token,
        TokenPurpose.INVITATION,
        body.password,
        realm=Realm.API,
    )


@router.post(
    "/password-reset",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Set a new password with a reset link",
    responses=error_responses(OneTimeTokenInvalid, ValidationFailed),
)
async def reset_password(body: RedeemRequest, session: SessionDep, ctx: ContextDep) -> None:
    """Single use, valid 48 hours; every existing session of the account is revoked. The
    reset link opens the page `/api/account/password-reset`, which calls this."""
    await sessions.redeem_one_time_token(
        session,
        ctx.hasher,
        body.token,
        TokenPurpose.PASSWORD_RESET,
        body.password,
        realm=Realm.API,
    )
