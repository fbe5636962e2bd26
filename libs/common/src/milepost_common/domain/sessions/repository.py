"""Statements on ``refresh_tokens`` and ``one_time_tokens``."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain.sessions.models import OneTimeToken, RefreshToken, TokenPurpose
from milepost_common.domain.users.models import User


class RefreshTokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def find_by_hash(
        self, token_hash: str, *, for_update: bool = False
    ) -> RefreshToken | None:
        query = select(RefreshToken).where(RefreshToken.token_hash == token_hash)
        if for_update:
            query = query.with_for_update().execution_options(populate_existing=True)
        return (await self.session.scalars(query)).first()

    async def revoke_family(self, family_id: uuid.UUID, at: datetime) -> None:
        await self.session.execute(
            update(RefreshToken)
            .where(col(RefreshToken.family_id) == family_id, col(RefreshToken.revoked_at).is_(None))
            .values(revoked_at=at)
        )

    async def revoke_for_user(self, user_id: uuid.UUID, at: datetime) -> None:
        await self.session.execute(
            update(RefreshToken)
            .where(col(RefreshToken.user_id) == user_id, col(RefreshToken.revoked_at).is_(None))
            .values(revoked_at=at)
        )

    async def revoke_for_org(self, org_id: uuid.UUID, at: datetime) -> None:
        users = select(col(User.id)).where(col(User.org_id) == org_id)
        await self.session.execute(
            update(RefreshToken)
            .where(col(RefreshToken.user_id).in_(users), col(RefreshToken.revoked_at).is_(None))
            .values(revoked_at=at)
        )


class OneTimeTokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def use_up_unused(
        self, user_id: uuid.UUID, purpose: TokenPurpose | None, at: datetime
    ) -> None:
        """Mark the user's unused tokens of ``purpose`` (None: of every purpose) used: they die."""
        query = update(OneTimeToken).where(
            col(OneTimeToken.user_id) == user_id, col(OneTimeToken.used_at).is_(None)
        )
        if purpose is not None:
            query = query.where(col(OneTimeToken.purpose) == purpose)
        await self.session.execute(query.values(used_at=at))

    async def find_for_update(self, token_hash: str, purpose: TokenPurpose) -> OneTimeToken | None:
        return (
            await self.session.scalars(
                select(OneTimeToken)
                .where(OneTimeToken.token_hash == token_hash, OneTimeToken.purpose == purpose)
                .with_for_update()
            )
        ).first()
