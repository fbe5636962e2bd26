"""A refresh or a login racing what ends every session of the account (a password change or
reset, a deactivation, its organization's suspension): the token pair the refresh mints is
revoked with the others, not left over, and the login is refused or its session ended."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.auth import PasswordHasher, Realm, TokenCodec, hash_secret
from milepost_common.db import Database, unit_of_work
from milepost_common.domain.organizations import service as org_service
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.sessions import service as sessions
from milepost_common.domain.sessions.errors import LoginFailed, RefreshTokenInvalid
from milepost_common.domain.sessions.models import RefreshToken, TokenPurpose
from milepost_common.domain.users import service as user_service
from milepost_common.domain.users.models import OrgRole, PlatformRole, User
from milepost_common.settings import AuthSettings
from milepost_common.testing.factories import (
    DEFAULT_PASSWORD,
    make_operator,
    make_organization,
    make_user,
    principal_for,
)

SETTINGS = AuthSettings(
    jwt_keys={"k": SecretStr("k" * 40)}, argon2_time_cost=1, argon2_memory_kib=64
)
CODEC = TokenCodec(SETTINGS, Realm.API)
HASHER = PasswordHasher(SETTINGS)

EndSessions = Callable[[AsyncSession, User], Awaitable[object]]


async def _change_password(session: AsyncSession, user: User) -> object:
    return await user_service.change_own_password(
        session,
        principal_for(user),
        HASHER,
        current_password=DEFAULT_PASSWORD,
        new_password="a new password 123",
    )


async def _reset_password(session: AsyncSession, user: User) -> object:
    raw = await sessions.issue_one_time_token(session, user, TokenPurpose.PASSWORD_RESET)
    return await sessions.redeem_one_time_token(
        session, HASHER, raw, TokenPurpose.PASSWORD_RESET, "a new password 123"
    )


async def _deactivate(session: AsyncSession, user: User) -> object:
    return await user_service.set_active(session, principal_for(user), user, False, "users")


@pytest.mark.parametrize("end_sessions", [_change_password, _reset_password, _deactivate])
async def test_a_refresh_racing_the_end_of_every_session_is_revoked_too(
    committed_db: Database, end_sessions: EndSessions
) -> None:
    # The refresh held its old token while the revocation waited for it, then committed a
    # new one the revocation's statement could not see: a stolen refresh token refreshed at
    # that moment kept working after the password had changed.
    async with unit_of_work(committed_db) as session:
        org = await make_organization(session)
        user = await make_user(session, org, role=OrgRole.MANAGER)
        pair = await sessions.issue_token_pair(session, CODEC, SETTINGS, user, Realm.API)
    assert pair.refresh_token is not None
    release = asyncio.Event()

    async def refresh() -> str | None:
        async with unit_of_work(committed_db) as session:
            rotated = await sessions.refresh(session, CODEC, SETTINGS, pair.refresh_token or "")
            await release.wait()
        return rotated.refresh_token

    async def end() -> None:
        async with unit_of_work(committed_db) as session:
            stored = await session.get(User, user.id)
            assert stored is not None
            await end_sessions(session, stored)

    refreshing = asyncio.create_task(refresh())
    await asyncio.sleep(0.3)
    ending = asyncio.create_task(end())
    await asyncio.sleep(0.3)
    release.set()
    minted, _ = await asyncio.gather(refreshing, ending)

    assert minted is not None
    async with unit_of_work(committed_db) as session:
        token = (
            await session.scalars(
                select(RefreshToken).where(col(RefreshToken.token_hash) == hash_secret(minted))
            )
        ).one()
    assert token.revoked_at is not None


async def test_a_refresh_racing_the_suspension_of_its_organization_is_revoked_too(
    committed_db: Database,
) -> None:
    # The refresh checked the organization before the suspension committed and minted a
    # pair the suspension's revocation could not see: it worked again on reactivation.
    async with unit_of_work(committed_db) as session:
        org = await make_organization(session)
        user = await make_user(session, org, role=OrgRole.MANAGER)
        operator = await make_operator(session)
        pair = await sessions.issue_token_pair(session, CODEC, SETTINGS, user, Realm.API)
    assert pair.refresh_token is not None
    release = asyncio.Event()

    async def refresh() -> str | None:
        async with unit_of_work(committed_db) as session:
            rotated = await sessions.refresh(session, CODEC, SETTINGS, pair.refresh_token or "")
            await release.wait()
        return rotated.refresh_token

    async def suspend() -> None:
        async with unit_of_work(committed_db) as session:
            stored = await session.get(Organization, org.id)
            assert stored is not None
            await org_service.suspend_organization(session, principal_for(operator), stored)

    refreshing = asyncio.create_task(refresh())
    await asyncio.sleep(0.3)
    suspending = asyncio.create_task(suspend())
    await asyncio.sleep(0.3)
    release.set()
    minted, _ = await asyncio.gather(refreshing, suspending)

    assert minted is not None
    async with unit_of_work(committed_db) as session:
        stored = await session.get(Organization, org.id)
        assert stored is not None
        await org_service.reactivate_organization(session, principal_for(operator), stored)
    async with unit_of_work(committed_db) as session:
        with pytest.raises(RefreshTokenInvalid):
            await sessions.refresh(session, CODEC, SETTINGS, minted)


async def test_a_refresh_started_while_its_organization_is_being_suspended_is_refused(
    committed_db: Database,
) -> None:
    async with unit_of_work(committed_db) as session:
        org = await make_organization(session)
        user = await make_user(session, org, role=OrgRole.MANAGER)
        operator = await make_operator(session)
        pair = await sessions.issue_token_pair(session, CODEC, SETTINGS, user, Realm.API)
    release = asyncio.Event()

    async def suspend() -> None:
        async with unit_of_work(committed_db) as session:
            stored = await session.get(Organization, org.id)
            assert stored is not None
            await org_service.suspend_organization(session, principal_for(operator), stored)
            await release.wait()

    async def refresh() -> None:
        async with unit_of_work(committed_db) as session:
            await sessions.refresh(session, CODEC, SETTINGS, pair.refresh_token or "")

    suspending = asyncio.create_task(suspend())
    await asyncio.sleep(0.3)
    refreshing = asyncio.create_task(refresh())
    await asyncio.sleep(0.3)
    release.set()
    await suspending
    with pytest.raises(RefreshTokenInvalid):
        await refreshing


async def _suspend_org(session: AsyncSession, user: User) -> object:
    org = await session.get(Organization, user.org_id)
    operator = await make_operator(session)
    assert org is not None
    return await org_service.suspend_organization(session, principal_for(operator), org)


@pytest.mark.parametrize(
    "end_sessions", [_change_password, _reset_password, _deactivate, _suspend_org]
)
async def test_a_login_racing_the_end_of_every_session_is_refused(
    committed_db: Database, end_sessions: EndSessions
) -> None:
    # The login checked the account and its organization before the revocation committed,
    # then minted a refresh token the revocation's statement could not see: a login with
    # the old password, or into a suspended organization, kept a working session.
    async with unit_of_work(committed_db) as session:
        org = await make_organization(session)
        user = await make_user(session, org, role=OrgRole.MANAGER)
    release = asyncio.Event()

    async def end() -> None:
        async with unit_of_work(committed_db) as session:
            stored = await session.get(User, user.id)
            assert stored is not None
            await end_sessions(session, stored)
            await release.wait()

    async def log_in() -> str | None:
        async with unit_of_work(committed_db) as session:
            found = await sessions.authenticate(
                session, HASHER, Realm.API, user.email, DEFAULT_PASSWORD
            )
            pair = await sessions.issue_token_pair(session, CODEC, SETTINGS, found, Realm.API)
        return pair.refresh_token

    ending = asyncio.create_task(end())
    await asyncio.sleep(0.3)
    logging_in = asyncio.create_task(log_in())
    await asyncio.sleep(0.3)
    release.set()
    await ending
    with pytest.raises(LoginFailed):
        await logging_in


async def test_a_console_session_opened_by_a_login_a_password_reset_waited_for_is_ended(
    committed_db: Database,
) -> None:
    # The reset read the time before waiting for the login: the console session the login
    # opened meanwhile began after the stamp and outlived the reset.
    async with unit_of_work(committed_db) as session:
        operator = await make_operator(session, role=PlatformRole.SUPPORT)
    release = asyncio.Event()

    async def log_in() -> float:
        async with unit_of_work(committed_db) as session:
            await sessions.authenticate(
                session, HASHER, Realm.ADMIN, operator.email, DEFAULT_PASSWORD
            )
            await release.wait()
            return time.time()  # the console session is created here, before the commit

    async def end() -> None:
        async with unit_of_work(committed_db) as session:
            stored = await session.get(User, operator.id)
            assert stored is not None
            await _reset_password(session, stored)

    logging_in = asyncio.create_task(log_in())
    await asyncio.sleep(0.3)
    ending = asyncio.create_task(end())
    await asyncio.sleep(0.3)
    release.set()
    began, _ = await asyncio.gather(logging_in, ending)

    async with unit_of_work(committed_db) as session:
        stored = await session.get(User, operator.id)
    assert stored is not None
    assert stored.sessions_ended_at is not None
    assert began <= stored.sessions_ended_at.timestamp()
