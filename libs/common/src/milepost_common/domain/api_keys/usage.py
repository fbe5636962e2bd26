"""API keys' ``last_used_at``, written in bulk by the app that sees the keys in use."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_RECORD_USAGE = text(
    """
    UPDATE api_keys AS k SET last_used_at = u.used_at
    FROM unnest(CAST(:ids AS uuid[]), CAST(:used_at AS timestamptz[])) AS u(id, used_at)
    WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.used_at)
    """
)


async def record_usage(session: AsyncSession, last_used: Mapping[uuid.UUID, datetime]) -> None:
    """One UPDATE for many keys; never moves a key's ``last_used_at`` backwards."""
    if not last_used:
        return
    ids = list(last_used)
    await session.execute(_RECORD_USAGE, {"ids": ids, "used_at": [last_used[i] for i in ids]})
