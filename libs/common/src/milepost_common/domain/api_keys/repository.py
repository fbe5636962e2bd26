"""Statements on ``api_keys``: lookups, lists, and ``last_used_at`` written in bulk by the
app that sees the keys in use."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy import func, or_, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain import paging
from milepost_common.domain.api_keys.models import ApiKey
from milepost_common.domain.api_keys.schemas import ApiKeyFilters, ApiKeyStatus
from milepost_common.domain.organizations import repository as org_repository
from milepost_common.domain.organizations.models import Organization

_RECORD_USAGE = text(
    """
    UPDATE api_keys AS k SET last_used_at = u.used_at
    FROM unnest(CAST(:ids AS uuid[]), CAST(:used_at AS timestamptz[])) AS u(id, used_at)
    WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.used_at)
    """
)


class ApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, key_id: uuid.UUID) -> ApiKey | None:
        return await self.session.get(ApiKey, key_id)

    async def count_usable_for_org(self, org_id: uuid.UUID, now: datetime) -> int:
        """The organization's keys that ingest still accepts: not revoked, not expired."""
        query = (
            select(func.count())
            .select_from(ApiKey)
            .where(
                col(ApiKey.org_id) == org_id,
                col(ApiKey.revoked_at).is_(None),
                or_(col(ApiKey.expires_at).is_(None), col(ApiKey.expires_at) > now),
            )
        )
        return int(await self.session.scalar(query) or 0)

    async def find_by_prefix_with_organization(
        self, prefix: str
    ) -> tuple[ApiKey, Organization] | None:
        """The key with this prefix (unique) and its organization."""
        row = (
            await self.session.execute(
                select(ApiKey, Organization)
                .join(Organization, col(Organization.id) == col(ApiKey.org_id))
                .where(ApiKey.prefix == prefix)
            )
        ).first()
        return None if row is None else (row[0], row[1])

    async def page_for_org(
        self, org_id: uuid.UUID, page: paging.PageRequest
    ) -> paging.PageResult[ApiKey]:
        """A keyset page of the organization's keys by ``created_at``."""
        return await paging.org_page(self.session, ApiKey, org_id, page)

    async def page(self, filters: ApiKeyFilters) -> paging.PageResult[ApiKey]:
        """A keyset page of keys (of one organization, of those named like ``org_name``, or
        all), by the filters' sort."""
        query = select(ApiKey)
        if filters.org_id is not None:
            query = query.where(ApiKey.org_id == filters.org_id)
        if filters.org_name:
            query = query.where(col(ApiKey.org_id).in_(org_repository.ids_named(filters.org_name)))
        if filters.q:
            query = query.where(
                or_(
                    col(ApiKey.name).icontains(filters.q, autoescape=True),
                    col(ApiKey.prefix).startswith(filters.q, autoescape=True),
                )
            )
        now = datetime.now(UTC)
        revoked, expires = col(ApiKey.revoked_at), col(ApiKey.expires_at)
        if filters.status is ApiKeyStatus.REVOKED:
            query = query.where(revoked.is_not(None))
        elif filters.status is ApiKeyStatus.EXPIRED:
            query = query.where(revoked.is_(None), expires <= now)
        elif filters.status is ApiKeyStatus.ACTIVE:
            query = query.where(revoked.is_(None), or_(expires.is_(None), expires > now))
        return await paging.sorted_page(self.session, query, ApiKey, filters)

    async def record_usage(self, last_used: Mapping[uuid.UUID, datetime]) -> None:
        """One UPDATE for many keys; never moves a key's ``last_used_at`` backwards."""
        if not last_used:
            return
        ids = list(last_used)
        await self.session.execute(
            _RECORD_USAGE, {"ids": ids, "used_at": [last_used[i] for i in ids]}
        )
