"""The write path of positions: store new fixes with conflict-skip, know where fixes may go."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.cache import TtlCache
from milepost_common.domain.positions.repository import (
    InsertedPositions,
    NewPositions,
    PositionRepository,
)

__all__ = [
    "InsertedPositions",
    "NewPositions",
    "StorableWindow",
    "last_fix_time",
    "load_storable_window",
    "storable_window",
    "store_positions",
]


# The one key of a cache of the storable window.
_WINDOW = "storable_window"


@dataclass(frozen=True, slots=True)
class StorableWindow:
    """``[start, end)``: the contiguous run of daily partitions that holds the present."""

    start: datetime
    end: datetime


async def store_positions(
    session: AsyncSession, org_id: uuid.UUID, batch_id: uuid.UUID, rows: NewPositions
) -> InsertedPositions:
    """Insert the fixes not stored yet in one statement; repeats (in the batch or already
    stored) are skipped, never errors. Every fix must lie in the storable window."""
    if not rows:
        return InsertedPositions(0, [])
    return await PositionRepository(session).insert_new(org_id, batch_id, rows)


async def last_fix_time(session: AsyncSession, device_id: uuid.UUID) -> datetime | None:
    """The device's latest stored fix, whichever organization it was stored for."""
    return await PositionRepository(session).last_fix_time(device_id)


def contiguous_window(
    bounds: list[tuple[datetime, datetime]], now: datetime
) -> StorableWindow | None:
    """The gap-free run of partitions around ``now`` (or the newest run when none holds it)."""
    runs: list[StorableWindow] = []
    for lower, upper in sorted(bounds):
        if runs and lower <= runs[-1].end:
            runs[-1] = StorableWindow(runs[-1].start, max(runs[-1].end, upper))
        else:
            runs.append(StorableWindow(lower, upper))
    for run in runs:
        if run.start <= now < run.end:
            return run
    return runs[-1] if runs else None


async def load_storable_window(session: AsyncSession, now: datetime) -> StorableWindow | None:
    """The fix times an insert can take without hitting a missing partition (None: none)."""
    return contiguous_window(await PositionRepository(session).partition_bounds(), now)


async def storable_window(
    session: AsyncSession, now: datetime, cache: TtlCache[str, StorableWindow] | None = None
) -> StorableWindow | None:
    """:func:`load_storable_window`, re-read from the catalog at most every ``cache.ttl_s``
    seconds when a cache is given.

    Partitions are created days ahead and dropped only past the longest retention, so a
    window a minute old is still right; clearing the cache serves the rare case where it is
    not.
    """
    if cache is None:
        return await load_storable_window(session, now)
    window = cache.get(_WINDOW)
    if window is None:
        window = await load_storable_window(session, now)
        if window is not None:
            cache.put(_WINDOW, window)
    return window
