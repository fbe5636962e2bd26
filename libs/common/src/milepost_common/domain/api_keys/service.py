"""Issuing and revoking upstream API keys (shown once, stored as a hash)."""

from __future__ import annotations

import secrets
import string
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.auth import hash_secret
from milepost_common.domain import paging
from milepost_common.domain.api_keys.errors import (
    ApiKeyExpired,
    ApiKeyLimitReached,
    ApiKeyNotFound,
    ApiKeyRevoked,
)
from milepost_common.domain.api_keys.models import ApiKey, Scope
from milepost_common.domain.api_keys.repository import ApiKeyRepository
from milepost_common.domain.api_keys.schemas import ApiKeyFilters
from milepost_common.domain.audit import service as audit
from milepost_common.domain.base import lock_org_for_limit
from milepost_common.domain.principals import API_KEY_PREFIX, API_KEY_PREFIX_LEN, Principal

_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True, slots=True)
class IssuedKey:
    api_key: ApiKey
    secret: str  # the only time the plaintext exists outside the caller's client


def _generate() -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(40))
    return f"{API_KEY_PREFIX}_{body}"


async def issue_api_key(
    session: AsyncSession,
    actor: Principal,
    org_id: uuid.UUID,
    name: str,
    *,
    scopes: list[Scope] | None = None,
    expires_at: datetime | None = None,
    pepper: str = "",
    limit: int | None = None,
) -> IssuedKey:
    """Create a key; the secret is returned once and only its hash is stored. Audited.
    Raises ApiKeyLimitReached when ``limit`` is given and the organization already has that
    many usable keys (counted with its row locked)."""
    if limit is not None:
        await lock_org_for_limit(session, org_id)
        if await ApiKeyRepository(session).count_usable_for_org(org_id, datetime.now(UTC)) >= limit:
            raise ApiKeyLimitReached.at(limit)
    secret = _generate()
    api_key = ApiKey(
        org_id=org_id,
        name=name,
        prefix=secret[:API_KEY_PREFIX_LEN],
        key_hash=hash_secret(secret, pepper),
        # Each scope once, in the order given (a repeated one grants nothing more).
        scopes=list(dict.fromkeys(s.value for s in (scopes or [Scope.INGEST]))),
        created_by_id=actor.id if actor.kind in ("user", "operator") else None,
        expires_at=expires_at,
    )
    session.add(api_key)
    await session.flush()
    await audit.record(
        session,
        actor,
        "api_keys.issue",
        target_type="api_key",
        target_id=api_key.id,
        org_id=org_id,
        diff={"name": name, "prefix": api_key.prefix, "scopes": api_key.scopes},
    )
    return IssuedKey(api_key, secret)


async def get_api_key(
    session: AsyncSession, key_id: uuid.UUID, org_id: uuid.UUID | None = None
) -> ApiKey:
    """Raises ApiKeyNotFound when missing or (with ``org_id``) of another organization."""
    api_key = await ApiKeyRepository(session).get(key_id)
    if api_key is None or (org_id is not None and api_key.org_id != org_id):
        raise ApiKeyNotFound()
    return api_key


async def list_api_keys(
    session: AsyncSession, org_id: uuid.UUID, page: paging.PageRequest
) -> paging.PageResult[ApiKey]:
    """A keyset page of the organization's keys (revoked ones too), by creation time."""
    return await ApiKeyRepository(session).page_for_org(org_id, page)


async def revoke_api_key(session: AsyncSession, actor: Principal, api_key: ApiKey) -> ApiKey:
    """Idempotent: revoking a revoked key changes nothing and records nothing."""
    if api_key.revoked_at is None:
        api_key.revoked_at = datetime.now(UTC)
        session.add(api_key)
        await session.flush()
        await audit.record(
            session,
            actor,
            "api_keys.revoke",
            target_type="api_key",
            target_id=api_key.id,
            org_id=api_key.org_id,
            diff={"prefix": api_key.prefix},
        )
    return api_key


async def rotate_api_key(
    session: AsyncSession, actor: Principal, api_key: ApiKey, *, pepper: str = ""
) -> IssuedKey:
    """A new key with the same name, scopes and expiry; the old one is revoked at once.

    Raises ApiKeyRevoked or ApiKeyExpired (409) for a key ingest already refuses (issue a
    new one instead: the new key would inherit the past expiry). Audited
    (``api_keys.rotate``, naming both prefixes).
    """
    if api_key.revoked_at is not None:
        raise ApiKeyRevoked()
    if api_key.expires_at is not None and api_key.expires_at <= datetime.now(UTC):
        raise ApiKeyExpired()
    issued = await issue_api_key(
        session,
        actor,
        api_key.org_id,
        api_key.name,
        scopes=[Scope(s) for s in api_key.scopes],
        expires_at=api_key.expires_at,
        pepper=pepper,
    )
    api_key.revoked_at = datetime.now(UTC)
    session.add(api_key)
    await session.flush()
    await audit.record(
        session,
        actor,
        "api_keys.rotate",
        target_type="api_key",
        target_id=api_key.id,
        org_id=api_key.org_id,
        diff={"prefix": [api_key.prefix, issued.api_key.prefix], "new_id": str(issued.api_key.id)},
    )
    return issued


async def list_api_keys_page(
    session: AsyncSession, filters: ApiKeyFilters
) -> paging.PageResult[ApiKey]:
    """A keyset page of keys (of one organization, of those named like ``org_name``, or
    all), by the filters' sort."""
    return await ApiKeyRepository(session).page(filters)


async def record_usage(session: AsyncSession, last_used: Mapping[uuid.UUID, datetime]) -> None:
    """Write the keys' ``last_used_at`` (the system's book-keeping, no principal); one
    statement for many keys, never moving a key's time backwards."""
    await ApiKeyRepository(session).record_usage(last_used)
