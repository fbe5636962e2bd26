"""Issuing and revoking upstream API keys (shown once, stored as a hash)."""

from __future__ import annotations

import secrets
import string
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import col, select
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.auth import hash_secret
from milepost_common.domain.api_keys.models import ApiKey, Scope
from milepost_common.domain.audit import service as audit
from milepost_common.domain.principals import API_KEY_PREFIX, API_KEY_PREFIX_LEN, Principal
from milepost_common.errors import NotFound

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
) -> IssuedKey:
    """Create a key; the secret is returned once and only its hash is stored. Audited."""
    secret = _generate()
    api_key = ApiKey(
        org_id=org_id,
        name=name,
        prefix=secret[:API_KEY_PREFIX_LEN],
        key_hash=hash_secret(secret, pepper),
        scopes=[s.value for s in (scopes or [Scope.INGEST])],
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
    """Raises NotFound when missing or (with ``org_id``) of another organization."""
    api_key = await session.get(ApiKey, key_id)
    if api_key is None or (org_id is not None and api_key.org_id != org_id):
        raise NotFound("API key not found.")
    return api_key


async def list_api_keys(session: AsyncSession, org_id: uuid.UUID) -> list[ApiKey]:
    query = (
        select(ApiKey)
        .where(ApiKey.org_id == org_id)
        .order_by(col(ApiKey.created_at), col(ApiKey.id))
    )
    return list((await session.scalars(query)).all())


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
