"""Logins, access/refresh token pairs and one-time tokens for both realms.

Refresh tokens follow RFC 9700 §4.14.2: opaque, stored as a hash, rotated on every use;
presenting a rotated one again revokes the whole family. One-time tokens (invitations,
password resets) are hashed, single use and expire after 48 hours.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.auth import (
    PasswordHasher,
    Realm,
    TokenCodec,
    hash_secret,
    new_secret,
    normalize_email,
)
from milepost_common.domain.audit import service as audit
from milepost_common.domain.organizations.repository import OrganizationRepository
from milepost_common.domain.principals import Principal, PrincipalKind
from milepost_common.domain.sessions.errors import (
    LoginFailed,
    OneTimeTokenInvalid,
    RefreshTokenInvalid,
    RefreshTokenReused,
)
from milepost_common.domain.sessions.models import OneTimeToken, RefreshToken, TokenPurpose
from milepost_common.domain.sessions.repository import (
    OneTimeTokenRepository,
    RefreshTokenRepository,
)
from milepost_common.domain.users.models import OrgRole, PlatformRole, User
from milepost_common.domain.users.repository import UserRepository
from milepost_common.settings import AuthSettings

ONE_TIME_TOKEN_TTL = timedelta(hours=48)
REFRESH_PREFIX = "mprt"
ONE_TIME_PREFIX = "mpot"


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str | None = None
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret


def principal_of(user: User, *, ip: str | None = None, request_id: str | None = None) -> Principal:
    if user.platform_role is not None:
        return Principal(
            PrincipalKind.OPERATOR,
            user.id,
            None,
            user.email,
            platform_role=PlatformRole(user.platform_role),
            ip=ip,
            request_id=request_id,
        )
    return Principal(
        PrincipalKind.USER,
        user.id,
        user.org_id,
        user.email,
        role=OrgRole(user.role) if user.role else None,
        ip=ip,
        request_id=request_id,
    )


async def _may_log_in(session: AsyncSession, user: User, realm: Realm) -> bool:
    if not user.is_active or user.password_hash is None:
        return False
    if realm is Realm.ADMIN:
        return user.platform_role is not None
    if user.org_id is None:
        return False
    org = await OrganizationRepository(session).get(user.org_id)
    return org is not None and org.suspended_at is None


NOT_AN_EMAIL = "(not an email address)"


def _attempted_as(email: str) -> str:
    """Who a failed login claimed to be, as the audit log keeps it: what was typed when it
    has an email's shape, else a placeholder: what lands in the email field without one is
    often the password, autofilled or typed first, and could match no account anyway."""
    typed = normalize_email(email)
    local, at, domain = typed.partition("@")
    shaped = bool(at and local) and "." in domain and not any(c.isspace() for c in typed)
    return typed if shaped else NOT_AN_EMAIL


async def authenticate(
    session: AsyncSession,
    hasher: PasswordHasher,
    realm: Realm,
    email: str,
    password: str,
    *,
    ip: str | None = None,
    request_id: str | None = None,
) -> User:
    """The user, or LoginFailed (no hint whether the email exists). Both outcomes audited."""
    users = UserRepository(session)
    user = await users.find_by_email(email)
    password_ok = await hasher.verify(password, user.password_hash if user else None)
    if user is not None and password_ok:
        # Locked before the checks below, then re-read: what ends the account's sessions
        # (a suspension, a deactivation, a password change or reset) locks the row too, so
        # it either committed first (and is seen here) or waits for this login to commit and
        # then revokes what it mints. Not FOR SHARE as a refresh: the login updates the row
        # (last_login_at) a statement or two later, which takes this lock anyway, and two
        # logins of one account each holding it shared could deadlock on that update.
        verified = user.password_hash
        user = await users.get_locked(user.id)
        password_ok = user is not None and user.password_hash == verified
    if user is None or not password_ok or not await _may_log_in(session, user, realm):
        anonymous = Principal(
            PrincipalKind.USER if realm is Realm.API else PrincipalKind.OPERATOR,
            user.id if user else None,
            user.org_id if user else None,
            _attempted_as(email),
            ip=ip,
            request_id=request_id,
        )
        await audit.record(
            session, anonymous, "auth.login_failed", target_type="realm", target_id=realm.value
        )
        raise LoginFailed()
    user.last_login_at = datetime.now(UTC)
    session.add(user)
    await audit.record(
        session,
        principal_of(user, ip=ip, request_id=request_id),
        "auth.login",
        target_type="realm",
        target_id=realm.value,
    )
    return user


async def issue_token_pair(
    session: AsyncSession,
    codec: TokenCodec,
    settings: AuthSettings,
    user: User,
    realm: Realm,
    *,
    with_refresh: bool = True,
    family_id: uuid.UUID | None = None,
) -> TokenPair:
    access, ttl = codec.issue(user.id, realm, settings.access_token_ttl_s)
    if not with_refresh:
        return TokenPair(access_token=access, expires_in=ttl)
    raw = new_secret(REFRESH_PREFIX)
    session.add(
        RefreshToken(
            user_id=user.id,
            family_id=family_id or uuid.uuid4(),
            token_hash=hash_secret(raw),
            expires_at=datetime.now(UTC) + timedelta(seconds=settings.refresh_token_ttl_s),
        )
    )
    await session.flush()
    return TokenPair(access_token=access, expires_in=ttl, refresh_token=raw)


async def refresh(
    session: AsyncSession,
    codec: TokenCodec,
    settings: AuthSettings,
    raw: str,
    *,
    ip: str | None = None,
    request_id: str | None = None,
) -> TokenPair:
    """Rotate a refresh token. Reuse of a rotated one revokes its family and is audited."""
    tokens = RefreshTokenRepository(session)
    token = await tokens.find_by_hash(hash_secret(raw))
    if token is not None:
        # The account first, then the token (the order ``revoke_user_sessions`` takes):
        # ending every session of the account waits for this refresh, then revokes the token
        # it mints too.
        await UserRepository(session).lock_row(token.user_id, share=True)
        token = await tokens.find_by_hash(hash_secret(raw), for_update=True)
    now = datetime.now(UTC)
    if token is None or token.revoked_at is not None or token.expires_at <= now:
        raise RefreshTokenInvalid()
    user = await UserRepository(session).get(token.user_id)
    if token.rotated_at is not None:
        await revoke_family(session, token.family_id)
        if user is not None:
            await audit.record(
                session,
                principal_of(user, ip=ip, request_id=request_id),
                "auth.refresh_reuse",
                target_type="refresh_token_family",
                target_id=token.family_id,
            )
        raise RefreshTokenReused()
    if user is None or not await _may_log_in(session, user, Realm.API):
        raise RefreshTokenInvalid()
    token.rotated_at = now
    session.add(token)
    return await issue_token_pair(
        session, codec, settings, user, Realm.API, family_id=token.family_id
    )


async def revoke_family(session: AsyncSession, family_id: uuid.UUID) -> None:
    await RefreshTokenRepository(session).revoke_family(family_id, datetime.now(UTC))


async def logout(session: AsyncSession, raw: str) -> None:
    """Revoke the refresh token's family; unknown tokens are ignored (idempotent)."""
    token = await RefreshTokenRepository(session).find_by_hash(hash_secret(raw))
    if token is not None:
        await revoke_family(session, token.family_id)


async def revoke_user_sessions(session: AsyncSession, user: User) -> None:
    """Every way into the account opened before now is closed (deactivation, a password
    changed or reset): its refresh tokens are revoked, its unused invitation and reset links
    die, and its console sessions are refused from their next request (``sessions_ended_at``)."""
    # Locked first: a refresh or a login in flight (which holds the row) commits before the
    # revocation reads the tokens, so the one it mints is revoked too; the time is read once
    # the lock is held, so a console session that login opened began before it.
    await UserRepository(session).lock_row(user.id)
    now = datetime.now(UTC)
    await RefreshTokenRepository(session).revoke_for_user(user.id, now)
    await OneTimeTokenRepository(session).use_up_unused(user.id, None, now)
    user.sessions_ended_at = now
    session.add(user)


async def revoke_org_sessions(session: AsyncSession, org_id: uuid.UUID) -> None:
    """Revoke every refresh token of an organization's users (suspension), those minted by
    refreshes in flight included."""
    # As in ``revoke_user_sessions``, for each account: a refresh holds its account's row
    # shared until it commits, so the revocation below sees the token it mints, and a
    # refresh that starts now waits and then finds the organization suspended. Refreshes
    # take no lock on the organization's row.
    await UserRepository(session).lock_org_rows(org_id)
    await RefreshTokenRepository(session).revoke_for_org(org_id, datetime.now(UTC))


async def issue_one_time_token(session: AsyncSession, user: User, purpose: TokenPurpose) -> str:
    """A single-use link secret for ``purpose``; earlier unused ones of the same purpose die."""
    now = datetime.now(UTC)
    await OneTimeTokenRepository(session).use_up_unused(user.id, purpose, now)
    raw = new_secret(ONE_TIME_PREFIX)
    session.add(
        OneTimeToken(
            user_id=user.id,
            purpose=purpose,
            token_hash=hash_secret(raw),
            expires_at=now + ONE_TIME_TOKEN_TTL,
        )
    )
    await session.flush()
    return raw


def _of_realm(user: User, realm: Realm | None) -> bool:
    if realm is None:
        return True
    if realm is Realm.ADMIN:
        return user.platform_role is not None
    return user.org_id is not None


async def redeem_one_time_token(
    session: AsyncSession,
    hasher: PasswordHasher,
    raw: str,
    purpose: TokenPurpose,
    new_password: str,
    *,
    realm: Realm | None = None,
) -> User:
    """Set the password through a one-time link; the link then dies and sessions are revoked.
    With ``realm``, only an account of that realm redeems here (an operator's link at the
    console, a member's at the api); any other link raises OneTimeTokenInvalid, unused."""
    token = await OneTimeTokenRepository(session).find_for_update(hash_secret(raw), purpose)
    now = datetime.now(UTC)
    if token is None or token.used_at is not None or token.expires_at <= now:
        raise OneTimeTokenInvalid()
    user = await UserRepository(session).get(token.user_id)
    if user is None or not user.is_active or not _of_realm(user, realm):
        raise OneTimeTokenInvalid()
    token.used_at = now
    user.password_hash = await hasher.hash(new_password)
    user.password_changed_at = now
    session.add_all([token, user])
    await revoke_user_sessions(session, user)
    action = (
        "auth.invitation_accept" if purpose is TokenPurpose.INVITATION else "auth.password_reset"
    )
    await audit.record(session, principal_of(user), action, target_type="user", target_id=user.id)
    return user
