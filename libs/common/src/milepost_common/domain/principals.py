"""Who is calling: one resolved principal per request, carrying its organization.

Resolution re-checks, on every request, what DESIGN.md says takes effect at once: an inactive
user, a suspended organization, a revoked or expired key. The answers are cached in-process
for a few seconds at most, so a suspension is seen within that time.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.auth import Realm, TokenCodec, hash_secret, secrets_match
from milepost_common.cache import TtlCache
from milepost_common.domain.api_keys.repository import ApiKeyRepository
from milepost_common.domain.users.models import OrgRole, PlatformRole
from milepost_common.domain.users.repository import UserRepository
from milepost_common.errors import Forbidden, Unauthorized

API_KEY_PREFIX = "mp"
API_KEY_PREFIX_LEN = 12  # "mp_" + 9 random characters, unique, used to find the row


class PrincipalKind(StrEnum):
    USER = "user"
    OPERATOR = "operator"
    API_KEY = "api_key"
    SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class Principal:
    kind: PrincipalKind
    id: uuid.UUID | None
    org_id: uuid.UUID | None
    label: str
    role: OrgRole | None = None
    platform_role: PlatformRole | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    ip: str | None = None
    request_id: str | None = None
    # When the credential presented stops working: the access token's or the API key's expiry.
    token_expires_at: datetime | None = None
    # The organization's own request limit for this realm (its plan); None: the default.
    rate_limit: str | None = None
    # Tokens of the user issued before it are refused (a password changed or reset, a deactivation).
    sessions_ended_at: datetime | None = None

    def with_request(self, ip: str | None, request_id: str | None) -> Principal:
        return replace(self, ip=ip, request_id=request_id)

    def require_org(self) -> uuid.UUID:
        if self.org_id is None:
            raise Forbidden()
        return self.org_id

    def require_role(self, minimum: OrgRole) -> None:
        """Raises Forbidden unless an organization member with at least ``minimum``."""
        if self.role is None or OrgRole(self.role).rank < minimum.rank:
            raise Forbidden()

    def require_platform_role(self, minimum: PlatformRole) -> None:
        if self.platform_role is None or PlatformRole(self.platform_role).rank < minimum.rank:
            raise Forbidden()


SYSTEM = Principal(kind=PrincipalKind.SYSTEM, id=None, org_id=None, label="system")


class PrincipalResolver:
    """Resolves bearer tokens and API keys; one instance per app process. Without a codec
    (ingest: API keys only) it holds no token keys and refuses every bearer token."""

    def __init__(
        self, codec: TokenCodec | None, *, cache_ttl_s: float, api_key_pepper: str = ""
    ) -> None:
        self.codec = codec
        self.pepper = api_key_pepper
        # ("user", user id, realm) or ("key", the key's hash) → the principal it resolved to
        self._cache: TtlCache[tuple[object, ...], Principal] = TtlCache(cache_ttl_s)

    async def from_access_token(self, session: AsyncSession, token: str, realm: Realm) -> Principal:
        """Raises Unauthorized for a bad token, an inactive user or a suspended organization."""
        if self.codec is None:
            raise Unauthorized("Invalid token.")
        claims = self.codec.verify(token, realm)
        principal = await self._cache.get_or_load(
            ("user", claims.subject, realm),
            lambda: self._load_user(session, claims.subject, realm),
        )
        ended = principal.sessions_ended_at
        # iat is whole seconds: a token issued in the second the sessions ended is kept.
        if ended is not None and claims.issued_at < ended.replace(microsecond=0):
            raise Unauthorized("This session has ended: log in again.")
        return replace(principal, token_expires_at=claims.expires_at)

    async def _load_user(
        self, session: AsyncSession, user_id: uuid.UUID, realm: Realm
    ) -> Principal:
        row = await UserRepository(session).get_with_organization(user_id)
        if row is None:
            raise Unauthorized("Invalid token.")
        user, org = row
        if not user.is_active:
            raise Unauthorized("This account is deactivated.")
        if realm is Realm.API:
            if org is None or user.role is None:
                raise Unauthorized("Invalid token.")
            if org.suspended_at is not None:
                raise Unauthorized("This organization is suspended.")
            return Principal(
                PrincipalKind.USER,
                user.id,
                org.id,
                user.email,
                role=OrgRole(user.role),
                rate_limit=org.api_rate_limit,
                sessions_ended_at=user.sessions_ended_at,
            )
        if user.platform_role is None:
            raise Unauthorized("Invalid token.")
        return Principal(
            PrincipalKind.OPERATOR,
            user.id,
            None,
            user.email,
            platform_role=PlatformRole(user.platform_role),
            sessions_ended_at=user.sessions_ended_at,
        )

    async def from_api_key(self, session: AsyncSession, key: str) -> Principal:
        """One hash and one indexed read; raises Unauthorized for unknown, revoked or expired
        keys and for keys of suspended organizations."""
        return await self._cache.get_or_load(
            ("key", hash_secret(key, self.pepper)),
            lambda: self._load_key(session, key),
            ttl_of=_until_expiry,  # a key expiring sooner than the cache's time is not kept past it
        )

    async def _load_key(self, session: AsyncSession, key: str) -> Principal:
        if "\x00" in key:  # no key holds one, and Postgres cannot compare text that does
            raise Unauthorized("Invalid API key.")
        prefix = key[:API_KEY_PREFIX_LEN]
        row = await ApiKeyRepository(session).find_by_prefix_with_organization(prefix)
        if row is None or not secrets_match(key, row[0].key_hash, self.pepper):
            raise Unauthorized("Invalid API key.")
        api_key, org = row
        now = datetime.now(UTC)
        if api_key.revoked_at is not None or (api_key.expires_at and api_key.expires_at <= now):
            raise Unauthorized("This API key is revoked or expired.")
        if org.suspended_at is not None:
            raise Unauthorized("This organization is suspended.")
        return Principal(
            PrincipalKind.API_KEY,
            api_key.id,
            org.id,
            api_key.prefix,
            scopes=frozenset(api_key.scopes),
            token_expires_at=api_key.expires_at,
        )


def _until_expiry(principal: Principal) -> float | None:
    """Seconds the principal may be cached for its credential's own expiry (None: no limit)."""
    if principal.token_expires_at is None:
        return None
    return (principal.token_expires_at - datetime.now(UTC)).total_seconds()
