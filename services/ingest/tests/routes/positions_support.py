"""What the tests of ``POST /ingest/v1/positions`` share: pushing a batch, the error envelope,
and the rows a batch left."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain.ingest_batches.models import IngestBatch
from milepost_common.domain.positions.models import Position

URL = "/ingest/v1/positions"
Fix = Callable[..., dict[str, Any]]
Fixes = Callable[..., list[dict[str, Any]]]


async def push(
    client: httpx.AsyncClient, auth: dict[str, str], items: list[Any], **headers: str
) -> httpx.Response:
    return await client.post(URL, json={"positions": items}, headers={**auth, **headers})


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert error["trace_id"] == response.headers["X-Request-ID"]
    return error


async def stored(session: AsyncSession, batch_id: str) -> list[Position]:
    query = select(Position).where(col(Position.batch_id) == uuid.UUID(batch_id))
    result = await session.execute(query.order_by(col(Position.fix_time)))
    return list(result.scalars().all())


async def batch_row(session: AsyncSession, batch_id: str) -> IngestBatch:
    query = select(IngestBatch).where(col(IngestBatch.id) == uuid.UUID(batch_id))
    query = query.execution_options(populate_existing=True)
    return (await session.execute(query)).scalar_one()
