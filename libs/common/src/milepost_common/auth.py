"""Credentials: argon2 passwords, JWTs with rotating keys, and random secrets stored hashed.

Passwords are the only argon2 use (hashed in a bounded thread pool: a login flood must not
starve the event loop or the memory). API keys, refresh tokens and one-time tokens are
high-entropy random strings: SHA-256 (HMAC with the pepper) is enough and costs microseconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from milepost_common.errors import Unauthorized
from milepost_common.settings import AuthSettings

JWT_ALGORITHM = "HS256"


class Realm(StrEnum):
    """A credential of one realm is refused by the others."""

    API = "api"
    ADMIN = "admin"


class PasswordHasher:
    """argon2id in a thread with bounded concurrency."""

    def __init__(self, settings: AuthSettings) -> None:
        self._hash = PasswordHash(
            (
                Argon2Hasher(
                    time_cost=settings.argon2_time_cost, memory_cost=settings.argon2_memory_kib
                ),
            )
        )
        self._slots = asyncio.Semaphore(settings.argon2_max_concurrency)
        # Verified against when the user does not exist, so timing does not reveal it.
        self._dummy = self._hash.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hash.hash, password)

    async def verify(self, password: str, password_hash: str | None) -> bool:
        async with self._slots:
            return (
                await asyncio.to_thread(self._hash.verify, password, password_hash or self._dummy)
                and password_hash is not None
            )


def normalize_email(email: str) -> str:
    """The one form of an email for lookups, uniqueness and login throttles alike: two
    spellings a login would accept as the same account never get two throttle buckets."""
    return email.strip().lower()


def new_secret(prefix: str, nbytes: int = 32) -> str:
    """A random credential like ``mp_live_3kX…``: the prefix tells what it is when leaked."""
    return f"{prefix}_{secrets.token_urlsafe(nbytes)}"


def hash_secret(secret: str, pepper: str = "") -> str:
    """Stored form of a random secret: HMAC-SHA256 with the pepper (plain SHA-256 without)."""
    if pepper:
        return hmac.new(pepper.encode(), secret.encode(), hashlib.sha256).hexdigest()
    return hashlib.sha256(secret.encode()).hexdigest()


def secrets_match(secret: str, stored_hash: str, pepper: str = "") -> bool:
    return hmac.compare_digest(hash_secret(secret, pepper), stored_hash)


@dataclass(frozen=True, slots=True)
class TokenClaims:
    subject: uuid.UUID
    realm: Realm
    issued_at: datetime
    expires_at: datetime
    token_id: str
    extra: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _KeySet:
    keys: dict[str, str]
    active: str


def _key_set(settings: AuthSettings, realm: Realm) -> _KeySet:
    if realm is Realm.API:
        configured, active, name = settings.jwt_keys, settings.jwt_active_kid, "JWT_KEYS"
    else:
        configured, active = settings.admin_jwt_keys, settings.admin_jwt_active_kid
        name = "ADMIN_JWT_KEYS"
    if not configured:
        raise ValueError(f"no MILEPOST_AUTH__{name}: this process cannot sign {realm} tokens")
    keys = {kid: key.get_secret_value() for kid, key in configured.items()}
    return _KeySet(keys, active or sorted(keys)[-1])


class TokenCodec:
    """Issues and verifies the JWTs of the realms it is built for, each with its own key set
    (api: ``MILEPOST_AUTH__JWT_KEYS``, admin: ``MILEPOST_AUTH__ADMIN_JWT_KEYS``): every key
    of a set verifies its realm's tokens, the active one signs them. A token is checked
    against its realm's keys only, so a key of one realm never vouches for the other, and a
    process holds only the keys of the realms it serves."""

    def __init__(self, settings: AuthSettings, realm: Realm, *more: Realm) -> None:
        self._sets = {r: _key_set(settings, r) for r in (realm, *more)}
        self._issuer = settings.issuer

    def issue(self, subject: uuid.UUID, realm: Realm, ttl_s: int, **extra: Any) -> tuple[str, int]:
        keys = self._sets[realm]  # a realm without keys here is a programming error
        now = datetime.now(UTC)
        claims = {
            **extra,
            "sub": str(subject),
            "aud": realm.value,
            "iss": self._issuer,
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(seconds=ttl_s)).timestamp()),
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(
            claims, keys.keys[keys.active], JWT_ALGORITHM, headers={"kid": keys.active}
        )
        return token, ttl_s

    def verify(self, token: str, realm: Realm) -> TokenClaims:
        """Raises Unauthorized for a tampered, expired, unknown-key or wrong-realm token, and
        for every token of a realm this codec holds no keys for."""
        keys = self._sets.get(realm)
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = keys.keys.get(kid) if keys is not None and isinstance(kid, str) else None
            if key is None:
                raise Unauthorized("Invalid token.")
            claims = jwt.decode(
                token,
                key,
                algorithms=[JWT_ALGORITHM],
                audience=realm.value,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "sub", "aud", "iss", "jti"]},
            )
            subject = uuid.UUID(claims["sub"])
        except (jwt.PyJWTError, ValueError):
            raise Unauthorized("Invalid or expired token.") from None
        reserved = {"sub", "aud", "iss", "iat", "exp", "jti"}
        return TokenClaims(
            subject=subject,
            realm=realm,
            issued_at=datetime.fromtimestamp(claims["iat"], UTC),
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
            token_id=claims["jti"],
            extra={k: v for k, v in claims.items() if k not in reserved},
        )
