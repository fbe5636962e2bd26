"""Two superadmins demoting or deactivating each other at once: one of them stays a
superadmin, so someone can still manage operators."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, func, select

from milepost_common.db import Database, unit_of_work
from milepost_common.domain.operators import service as operator_service
from milepost_common.domain.principals import Principal
from milepost_common.domain.users.models import PlatformRole, User
from milepost_common.errors import AppError
from milepost_common.testing.factories import make_operator, principal_for

Change = Callable[[AsyncSession, Principal, User], Awaitable[User]]


async def _demote(session: AsyncSession, actor: Principal, operator: User) -> User:
    return await operator_service.change_operator_role(
        session, actor, operator, PlatformRole.OPERATOR
    )


@pytest.mark.parametrize("change", [_demote, operator_service.deactivate_operator])
async def test_two_superadmins_changing_each_other_at_once_leave_one(
    committed_db: Database, change: Change
) -> None:
    # Each was still a superadmin when its request was authorized: both changes committed
    # and the platform had no active superadmin left.
    async with unit_of_work(committed_db) as session:
        first, second = [await make_operator(session) for _ in range(2)]

    async def act(actor: User, target_id: uuid.UUID, hold: asyncio.Event | None) -> str:
        async with unit_of_work(committed_db) as session:
            target = await session.get(User, target_id)
            assert target is not None
            try:
                await change(session, principal_for(actor), target)
            except AppError as error:
                return error.code
            if hold is not None:
                await hold.wait()
        return "done"

    release = asyncio.Event()
    holding = asyncio.create_task(act(first, second.id, release))
    await asyncio.sleep(0.3)
    racing = asyncio.create_task(act(second, first.id, None))
    await asyncio.sleep(0.3)
    release.set()

    assert await asyncio.gather(holding, racing) == ["done", "forbidden"]
    async with unit_of_work(committed_db) as session:
        left = await session.scalar(
            select(func.count())
            .select_from(User)
            .where(col(User.platform_role) == PlatformRole.SUPERADMIN, col(User.is_active))
        )
    assert left == 1
