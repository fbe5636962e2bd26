"""``POST /admin/v1/auth/token``: an operator's access token (``aud=admin``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, Field

from milepost_admin import login
from milepost_admin.deps import ContextDep
from milepost_common.auth import Realm
from milepost_common.domain.sessions import service as sessions
from milepost_common.domain.sessions.errors import LoginFailed
from milepost_common.errors import RateLimited, ValidationFailed
from milepost_common.web.deps import ClientIpDep, SessionDep
from milepost_common.web.errors import error_responses
from milepost_common.web.middleware import request_id_of

router = APIRouter(prefix="/v1/auth", tags=["auth"])


class AdminToken(BaseModel):
    access_token: str
    token_type: str = Field("bearer", examples=["bearer"])
    expires_in: int = Field(description="Seconds until the token expires.", examples=[900])


@router.post(
    "/token",
    summary="Log in as an operator (OAuth2 password form)",
    responses=error_responses(LoginFailed, RateLimited, ValidationFailed),
)
async def issue_token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    ip: ClientIpDep,
) -> AdminToken:
    """No refresh token: an operator logs in again when the access token expires."""
    user = await login.log_in(
        session,
        ctx,
        form.username,
        form.password,
        ip=ip,
        request_id=request_id_of(request.scope),
    )
    pair = await sessions.issue_token_pair(
        session, ctx.codec, ctx.settings.auth, user, Realm.ADMIN, with_refresh=False
    )
    return AdminToken(access_token=pair.access_token, expires_in=pair.expires_in)
