"""Positions: the write path (store new fixes with conflict-skip, know where fixes may go)
and the reads (a vehicle's history, the fleet's latest fixes, a trip's route)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.cache import TtlCache
from milepost_common.db import Reader
from milepost_common.domain import paging
from milepost_common.domain.devices.errors import DeviceNotFound
from milepost_common.domain.positions.repository import (
    DroppedFix,
    InsertedPositions,
    NewPositions,
    PositionReads,
    PositionRepository,
    StoredFix,
)
from milepost_common.domain.positions.schemas import LatestRow, PositionRow
from milepost_common.domain.principals import Principal
from milepost_common.errors import ValidationFailed
from milepost_common.pagination import cursor_time, decode_cursor, encode_cursor

__all__ = [
    "DroppedFix",
    "InsertedPositions",
    "NewPositions",
    "StorableWindow",
    "StoredFix",
    "create_partitions",
    "delete_expired_positions",
    "drop_partition",
    "last_fix_time",
    "list_batch_fixes",
    "list_expired_partitions",
    "list_fixes_after",
    "list_latest_positions",
    "list_org_latest_positions",
    "list_partition_runs",
    "list_positions",
    "load_storable_window",
    "partition_days_ahead",
    "route_of",
    "storable_window",
    "store_positions",
]

MAX_POSITIONS_LIMIT = 10_000
ROUTE_MAX_POINTS = 10_000


# The one key of a cache of the storable window.
_WINDOW = "storable_window"
_DAILY_PARTITION = re.compile(r"^positions_p(\d{8})$")


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


async def list_batch_fixes(session: AsyncSession, batch_id: uuid.UUID) -> Sequence[StoredFix]:
    """The fixes the batch stored, in no particular order."""
    return await PositionRepository(session).fixes_of_batch(batch_id)


async def list_fixes_after(
    session: AsyncSession,
    device_id: uuid.UUID,
    org_id: uuid.UUID,
    since: datetime | None,
    after: datetime | None,
    limit: int | None = None,
) -> Sequence[StoredFix]:
    """The device's fixes stored for the organization from ``since`` (its tenure's start,
    inclusive; None: no bound) and after ``after`` (exclusive; None: no bound), in time
    order; the first ``limit`` of them (None: all)."""
    lower = max(after, since) if after is not None and since is not None else after or since
    strict = after is not None and lower == after
    return await PositionRepository(session).fixes_of_device(
        device_id, org_id, lower, strict=strict, limit=limit
    )


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


async def list_positions(
    reads: Reader,
    actor: Principal,
    device_id: uuid.UUID,
    window: paging.Window,
    page: paging.PageRequest,
) -> paging.PageResult[PositionRow]:
    """A page of one vehicle's fixes by ``fix_time``. Raises DeviceNotFound, and
    ValidationFailed for a cursor of another vehicle or of the other order."""
    sort = page.sort or paging.Sort("fix_time")
    after = None
    if page.cursor is not None:
        raw_key, cursor_device = decode_cursor(page.cursor)
        # The cursor names its order, as the other lists' do: one of a newest-first walk
        # read oldest first would give the first page again.
        if not (
            cursor_device == device_id
            and isinstance(raw_key, list)
            and len(raw_key) == 2
            and raw_key[0] == sort.label
        ):
            raise ValidationFailed(
                "Invalid cursor.",
                details=[
                    {"loc": ["query", "cursor"], "msg": "Invalid cursor.", "type": "value_error"}
                ],
            )
        after = cursor_time(raw_key[1])
    rows = await PositionReads(reads).history(
        device_id,
        actor.require_org(),
        limit=page.limit + 1,
        after=after,
        start=window.start,
        end=window.end,
        descending=sort.descending,
    )
    if not rows:
        raise DeviceNotFound()
    if rows[0][0] is None:
        return paging.PageResult([], None)
    # asyncpg's records, in PositionRow's columns: a named tuple each would cost a tenth
    # of the read.
    items: list[PositionRow] = rows[: page.limit]
    next_cursor = (
        encode_cursor([sort.label, row_time(items[-1][0])], device_id)
        if len(rows) > page.limit
        else None
    )
    return paging.PageResult(items, next_cursor)


def row_time(json_time: str) -> datetime:
    """A history row's ``fix_time`` (JSON text of the UTC timestamp) as the instant it is."""
    return datetime.fromisoformat(json_time[1:-1]).replace(tzinfo=UTC)


async def list_latest_positions(reads: Reader, actor: Principal) -> list[LatestRow]:
    """Every vehicle of the organization with a fix, ascending by fix time then vehicle id."""
    return await list_org_latest_positions(reads, actor.require_org())


async def list_org_latest_positions(reads: Reader, org_id: uuid.UUID) -> list[LatestRow]:
    """``list_latest_positions`` of an organization named by its id (operators read any).
    The vehicle's name and plate come in the same statement: ``device_state`` holds the
    current tenure only, so the name is always the organization's own."""
    return await PositionReads(reads).latest_for_org(org_id)


async def route_of(
    session: AsyncSession,
    device_id: uuid.UUID,
    org_id: uuid.UUID,
    start: datetime,
    end: datetime | None,
) -> list[tuple[float, float]]:
    """``[lon, lat]`` points of a device between two times (inclusive), capped."""
    return await PositionRepository(session).route(
        device_id, org_id, start, end, limit=ROUTE_MAX_POINTS
    )


async def partition_days_ahead(session: AsyncSession) -> int:
    """Days of daily partitions ahead of today by the database's clock; -1 without any."""
    days = await PositionRepository(session).days_ahead()
    return -1 if days is None else days


async def list_partition_runs(session: AsyncSession) -> list[tuple[date, date]]:
    """The days whose partitions must exist, from the longest retention back to two days
    ahead, as ``(first, last)`` runs of at most 100 days, the newest first: create each in
    a transaction of its own (the worker's beat job: no principal)."""
    return await PositionRepository(session).partition_runs()


async def create_partitions(
    session: AsyncSession, first: date, last: date, *, lock_timeout_ms: int
) -> int:
    """Create the missing daily partitions of ``[first, last]``; how many were created.
    Idempotent. Each is attached, which takes SHARE UPDATE EXCLUSIVE on positions (no
    reader or writer holds it; another DDL, a partition's drop, does): waiting longer than
    ``lock_timeout_ms`` for it raises DBAPIError (SQLSTATE 55P03) and the transaction
    creates nothing."""
    repository = PositionRepository(session)
    await repository.limit_lock_waits(lock_timeout_ms)
    return await repository.create_partitions(first, last)


async def list_expired_partitions(session: AsyncSession, oldest_kept: date) -> list[str]:
    """The daily partitions wholly before ``oldest_kept``, by name (oldest first)."""
    expired = []
    for name in sorted(await PositionRepository(session).partition_names()):
        match = _DAILY_PARTITION.match(name)
        if match is None:
            continue
        day = datetime.strptime(match.group(1), "%Y%m%d").replace(tzinfo=UTC).date()
        if day + timedelta(days=1) <= oldest_kept:
            expired.append(name)
    return expired


async def drop_partition(session: AsyncSession, name: str, *, lock_timeout_ms: int) -> None:
    """Detach and drop a partition ``list_expired_partitions`` named (retention; no
    principal). The detach takes ACCESS EXCLUSIVE on positions: waiting longer than
    ``lock_timeout_ms`` for it raises DBAPIError (SQLSTATE 55P03), the partition kept."""
    repository = PositionRepository(session)
    await repository.limit_lock_waits(lock_timeout_ms)
    await repository.drop_partition(name)


async def delete_expired_positions(
    session: AsyncSession, org_id: uuid.UUID, since: datetime, cutoff: datetime, *, limit: int
) -> int:
    """Delete up to ``limit`` of the organization's fixes in ``[since, cutoff)`` (``since``:
    its retention watermark, before which none is left); how many went. Retention: no
    principal; repeat while it returns ``limit``."""
    return await PositionRepository(session).delete_expired(org_id, since, cutoff, limit=limit)
