"""The caller's own account: profile and password."""

from __future__ import annotations

from fastapi import APIRouter

from milepost_api.deps import AUTHENTICATED, ContextDep, CurrentUser
from milepost_api.http_cache import REVALIDATE, cache_control
from milepost_api.schemas import MeRead, MeUpdate, PasswordChange, TokenPairRead
from milepost_common.auth import Realm
from milepost_common.domain.sessions import service as sessions
from milepost_common.domain.users import service as user_service
from milepost_common.domain.users.errors import WrongPassword
from milepost_common.errors import RateLimited, Unauthorized, ValidationFailed
from milepost_common.web.deps import SessionDep
from milepost_common.web.errors import error_responses

router = APIRouter(prefix="/v1/me", tags=["me"], responses=AUTHENTICATED)


@router.get("", summary="Who am I", responses=error_responses(Unauthorized))
@cache_control(REVALIDATE)
async def get_me(session: SessionDep, user: CurrentUser) -> MeRead:
    """The caller's account, organization and role."""
    assert user.id is not None  # noqa: S101 - user principals have ids
    return MeRead.model_validate(await user_service.get_user(session, user.id, org_id=user.org_id))


@router.patch(
    "", summary="Update my profile", responses=error_responses(Unauthorized, ValidationFailed)
)
async def update_own_profile(body: MeUpdate, session: SessionDep, user: CurrentUser) -> MeRead:
    """Only the fields sent change."""
    return MeRead.model_validate(
        await user_service.update_own_profile(session, user, name=body.name)
    )


@router.post(
    "/password",
    summary="Change my password",
    responses=error_responses(WrongPassword, RateLimited, ValidationFailed),
)
async def change_own_password(
    body: PasswordChange, session: SessionDep, user: CurrentUser, ctx: ContextDep
) -> TokenPairRead:
    """Needs the current password. Every session of the account (other devices included)
    is revoked; the answer is a fresh token pair for this one. Wrong current passwords are
    throttled like logins."""
    async with ctx.login_throttle.attempt(user.label, user.ip or "unknown"):
        account = await user_service.change_own_password(
            session,
            user,
            ctx.hasher,
            current_password=body.current_password,
            new_password=body.new_password,
        )
    pair = await sessions.issue_token_pair(
        session, ctx.codec, ctx.settings.auth, account, Realm.API
    )
    assert pair.refresh_token is not None  # noqa: S101 - issued with a refresh token
    return TokenPairRead(
        access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in
    )
