"""Column helpers shared by the tables (UUID keys, UTC timestamps, JSONB) and the row
lookups and counts the features' repositories build on."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Column, DateTime, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field, SQLModel, col, select

ModelT = TypeVar("ModelT", bound=SQLModel)


def utcnow() -> datetime:
    return datetime.now(UTC)


def id_field() -> Any:
    return Field(default_factory=uuid.uuid4, primary_key=True)


def tz_field(*, nullable: bool = True, index: bool = False, default_now: bool = False) -> Any:
    """A ``timestamptz`` column (timestamps are stored and emitted in UTC)."""
    column = Column(
        DateTime(timezone=True),
        nullable=nullable,
        index=index,
        server_default=text("now()") if default_now else None,
    )
    if default_now:
        return Field(default_factory=utcnow, sa_column=column)
    return Field(default=None, sa_column=column)


def jsonb_field(default_factory: Any = dict, *, nullable: bool = False) -> Any:
    empty = "'[]'::jsonb" if default_factory is list else "'{}'::jsonb"
    return Field(
        default_factory=default_factory,
        sa_column=Column(
            JSONB, nullable=nullable, server_default=None if nullable else text(empty)
        ),
    )


async def find_by_id(
    session: AsyncSession,
    model: type[ModelT],
    row_id: uuid.UUID,
    *,
    org_id: uuid.UUID | None = None,
    for_update: bool = False,
    for_share: bool = False,
) -> ModelT | None:
    """The row with this id, of ``org_id`` when given (another organization's row is
    missing, like an absent one), locked when asked (``for_share``: against updates and
    deletes only); None when missing. A building block of the features' repositories (their
    services raise the feature's ``NotFound``)."""
    query = select(model).where(col(model.id) == row_id)  # type: ignore[attr-defined]
    if org_id is not None:
        query = query.where(col(model.org_id) == org_id)  # type: ignore[attr-defined]
    if for_update or for_share:
        query = query.with_for_update(read=not for_update)
    return (await session.scalars(query)).first()


async def lock_by_ids(
    session: AsyncSession, model: type[ModelT], row_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, ModelT]:
    """These rows read afresh and locked (``FOR NO KEY UPDATE``: rows that only reference
    them go on) until the transaction ends, by id; one deleted meanwhile is missing. Locked
    in id order, so two lockers of the same rows wait for each other, never deadlock."""
    key = col(model.id)  # type: ignore[attr-defined]
    query = (
        select(model)
        .where(key.in_(sorted(row_ids)))
        .order_by(key)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    return {row.id: row for row in await session.scalars(query)}  # type: ignore[attr-defined]


async def lock_org_for_limit(session: AsyncSession, org_id: uuid.UUID) -> None:
    """Lock the organization's row (``FOR NO KEY UPDATE``: inserts that only reference it go
    on) until the transaction ends, so two changes that check a per-organization limit
    cannot both pass it."""
    await session.execute(
        text("SELECT 1 FROM organizations WHERE id = :id FOR NO KEY UPDATE"), {"id": org_id}
    )


async def count_for_org_locked(
    session: AsyncSession, model: type[SQLModel], org_id: uuid.UUID
) -> int:
    """The organization's rows of ``model``, counted with the organization's row locked
    (``lock_org_for_limit``)."""
    await lock_org_for_limit(session, org_id)
    query = select(func.count()).select_from(model).where(col(model.org_id) == org_id)  # type: ignore[attr-defined]
    return int(await session.scalar(query) or 0)
