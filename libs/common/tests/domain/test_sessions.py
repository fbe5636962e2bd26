from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.auth import PasswordHasher, Realm, TokenCodec
from milepost_common.domain.audit.models import AuditEntry
from milepost_common.domain.sessions import service as sessions
from milepost_common.domain.sessions.errors import (
    LoginFailed,
    OneTimeTokenInvalid,
    RefreshTokenInvalid,
    RefreshTokenReused,
)
from milepost_common.domain.sessions.models import OneTimeToken, TokenPurpose
from milepost_common.settings import AuthSettings
from milepost_common.testing.factories import DEFAULT_PASSWORD, make_operator, make_user

SETTINGS = AuthSettings(
    jwt_keys={"k": SecretStr("k" * 40)}, argon2_time_cost=1, argon2_memory_kib=64
)
CODEC = TokenCodec(SETTINGS, Realm.API)
HASHER = PasswordHasher(SETTINGS)


async def actions(session: AsyncSession) -> list[str]:
    rows = await session.scalars(select(AuditEntry).order_by(col(AuditEntry.occurred_at)))
    return [r.action for r in rows]


class TestAuthenticate:
    async def test_right_password_logs_in_and_is_audited(self, session: AsyncSession) -> None:
        user = await make_user(session)
        logged_in = await sessions.authenticate(
            session, HASHER, Realm.API, user.email.upper(), DEFAULT_PASSWORD
        )
        assert logged_in.id == user.id
        assert "auth.login" in await actions(session)

    async def test_wrong_password_fails_and_is_audited(self, session: AsyncSession) -> None:
        user = await make_user(session)
        with pytest.raises(LoginFailed):
            await sessions.authenticate(session, HASHER, Realm.API, user.email, "nope")
        assert "auth.login_failed" in await actions(session)

    async def test_operator_cannot_log_in_to_the_public_api(self, session: AsyncSession) -> None:
        operator = await make_operator(session)
        with pytest.raises(LoginFailed):
            await sessions.authenticate(
                session, HASHER, Realm.API, operator.email, DEFAULT_PASSWORD
            )


class TestRefresh:
    async def test_rotation_then_reuse_revokes_the_family(self, session: AsyncSession) -> None:
        user = await make_user(session)
        first = await sessions.issue_token_pair(session, CODEC, SETTINGS, user, Realm.API)
        assert first.refresh_token
        second = await sessions.refresh(session, CODEC, SETTINGS, first.refresh_token)
        assert second.refresh_token
        assert second.refresh_token != first.refresh_token
        with pytest.raises(RefreshTokenReused):
            await sessions.refresh(session, CODEC, SETTINGS, first.refresh_token)
        # The legitimate holder's newer token died with the family.
        with pytest.raises(RefreshTokenInvalid):
            await sessions.refresh(session, CODEC, SETTINGS, second.refresh_token)
        assert "auth.refresh_reuse" in await actions(session)

    async def test_logout_revokes(self, session: AsyncSession) -> None:
        user = await make_user(session)
        pair = await sessions.issue_token_pair(session, CODEC, SETTINGS, user, Realm.API)
        assert pair.refresh_token
        await sessions.logout(session, pair.refresh_token)
        with pytest.raises(RefreshTokenInvalid):
            await sessions.refresh(session, CODEC, SETTINGS, pair.refresh_token)


class TestOneTimeTokens:
    async def test_single_use(self, session: AsyncSession) -> None:
        user = await make_user(session, password_hash=None)
        raw = await sessions.issue_one_time_token(session, user, TokenPurpose.INVITATION)
        await sessions.redeem_one_time_token(
            session, HASHER, raw, TokenPurpose.INVITATION, "a brand new password"
        )
        assert await HASHER.verify("a brand new password", user.password_hash)
        with pytest.raises(OneTimeTokenInvalid):
            await sessions.redeem_one_time_token(
                session, HASHER, raw, TokenPurpose.INVITATION, "again and again"
            )

    async def test_expired_or_wrong_purpose(self, session: AsyncSession) -> None:
        user = await make_user(session)
        raw = await sessions.issue_one_time_token(session, user, TokenPurpose.PASSWORD_RESET)
        with pytest.raises(OneTimeTokenInvalid):
            await sessions.redeem_one_time_token(
                session, HASHER, raw, TokenPurpose.INVITATION, "whatever password"
            )
        token = (await session.scalars(select(OneTimeToken))).all()[-1]
        token.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        await session.flush()
        with pytest.raises(OneTimeTokenInvalid):
            await sessions.redeem_one_time_token(
                session, HASHER, raw, TokenPurpose.PASSWORD_RESET, "whatever password"
            )
