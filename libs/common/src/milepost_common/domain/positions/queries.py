"""Reads of positions: a vehicle's history straight from the partitioned table (keyset on
``(device_id, fix_time)``, the primary key) and the fleet's latest fix from ``device_state``.

Rows come back as plain tuples with ``attributes`` as JSON text: the API embeds them in its
answer without decoding and re-encoding them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain import paging
from milepost_common.domain.devices.errors import DeviceNotFound
from milepost_common.domain.principals import Principal
from milepost_common.errors import ValidationFailed
from milepost_common.pagination import cursor_time, decode_cursor, encode_cursor

MAX_POSITIONS_LIMIT = 10_000
ROUTE_MAX_POINTS = 10_000


class PositionRow(NamedTuple):
    fix_time: datetime
    lat: float
    lon: float
    speed: float | None
    course: float | None
    altitude: float | None
    accuracy: float | None
    attributes: str


class LatestRow(NamedTuple):
    vehicle_id: str
    vehicle_name: str
    vehicle_plate: str | None
    fix_time: datetime
    lat: float
    lon: float
    speed: float | None
    course: float | None
    altitude: float | None
    accuracy: float | None
    attributes: str


# One round trip: the device check and the page. No row means no such device in this
# organization; one row of NULLs means the device exists and the page is empty.
_HISTORY = """
SELECT p.fix_time, p.lat, p.lon, p.speed, p.course, p.altitude, p.accuracy,
       p.attributes::text AS attributes
FROM devices d
LEFT JOIN LATERAL (
    SELECT fix_time, lat, lon, speed, course, altitude, accuracy, attributes
    FROM positions
    WHERE device_id = d.id AND org_id = d.org_id {conditions}
    ORDER BY fix_time {direction}
    LIMIT $3
) p ON true
WHERE d.id = $1 AND d.org_id = $2
ORDER BY p.fix_time {direction}
"""
_STATEMENTS: dict[tuple[bool, bool, bool, bool], str] = {}


def history_statement(*, has_after: bool, has_start: bool, has_end: bool, descending: bool) -> str:
    """The history query for this combination of bounds; parameters ``$1`` device, ``$2``
    organization, ``$3`` limit, then after, start and end in that order when present."""
    flags = (has_after, has_start, has_end, descending)
    statement = _STATEMENTS.get(flags)
    if statement is None:
        conditions = ""
        n = 3
        if has_after:
            n += 1
            conditions += f" AND fix_time {'<' if descending else '>'} ${n}"
        if has_start:
            n += 1
            conditions += f" AND fix_time >= ${n}"
        if has_end:
            n += 1
            conditions += f" AND fix_time < ${n}"
        statement = _HISTORY.format(
            conditions=conditions, direction="DESC" if descending else "ASC"
        )
        _STATEMENTS[flags] = statement
    return statement


async def _driver(session: AsyncSession) -> Any:
    """The asyncpg connection under the session's connection. The hot read runs on it
    directly: one round trip, asyncpg's own statement cache, no result-row adaptation, and
    no BEGIN/COMMIT (SQLAlchemy's asyncpg adapter begins lazily, on its first statement);
    inside a transaction the session already began, it reads within it."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return raw.driver_connection


async def list_positions(
    session: AsyncSession,
    actor: Principal,
    device_id: uuid.UUID,
    window: paging.Window,
    page: paging.PageRequest,
) -> paging.PageResult[PositionRow]:
    """A page of one vehicle's fixes by ``fix_time``. Raises DeviceNotFound."""
    descending = page.sort is not None and page.sort.descending
    args: list[object] = [device_id, actor.require_org(), page.limit + 1]
    after = None
    if page.cursor is not None:
        raw_key, cursor_device = decode_cursor(page.cursor)
        if cursor_device != device_id:
            raise ValidationFailed(
                "Invalid cursor.",
                details=[
                    {"loc": ["query", "cursor"], "msg": "Invalid cursor.", "type": "value_error"}
                ],
            )
        after = cursor_time(raw_key)
        args.append(after)
    args.extend(bound for bound in (window.start, window.end) if bound is not None)
    statement = history_statement(
        has_after=after is not None,
        has_start=window.start is not None,
        has_end=window.end is not None,
        descending=descending,
    )
    rows = await (await _driver(session)).fetch(statement, *args)
    if not rows:
        raise DeviceNotFound()
    if rows[0][0] is None:
        return paging.PageResult([], None)
    items = [PositionRow(*row) for row in rows[: page.limit]]
    next_cursor = encode_cursor(items[-1].fix_time, device_id) if len(rows) > page.limit else None
    return paging.PageResult(items, next_cursor)


async def list_latest_positions(session: AsyncSession, actor: Principal) -> list[LatestRow]:
    """Every vehicle of the organization with a fix, ascending by fix time then vehicle id."""
    return await list_org_latest_positions(session, actor.require_org())


async def list_org_latest_positions(session: AsyncSession, org_id: uuid.UUID) -> list[LatestRow]:
    """``list_latest_positions`` of an organization named by its id (operators read any).
    The vehicle's name and plate come in the same statement: ``device_state`` holds the
    current tenure only, so the name is always the organization's own."""
    query = text(
        """
        SELECT s.device_id::text, d.name, d.plate, s.last_fix_time, s.last_lat, s.last_lon,
               s.last_speed, s.last_course, s.last_altitude, s.last_accuracy,
               s.last_attributes::text
        FROM device_state s
        JOIN devices d ON d.id = s.device_id
        WHERE d.org_id = :org_id AND s.last_fix_time IS NOT NULL
          AND s.last_lat IS NOT NULL AND s.last_lon IS NOT NULL
        ORDER BY s.last_fix_time, s.device_id
        """
    )
    rows = (await session.execute(query, {"org_id": org_id})).all()
    return [LatestRow(*row) for row in rows]


async def route_of(
    session: AsyncSession,
    device_id: uuid.UUID,
    org_id: uuid.UUID,
    start: datetime,
    end: datetime | None,
) -> list[tuple[float, float]]:
    """``[lon, lat]`` points of a device between two times (inclusive), capped."""
    conditions = "fix_time >= :start" + (" AND fix_time <= :end" if end is not None else "")
    query = text(
        f"SELECT lon, lat FROM positions WHERE device_id = :device_id AND org_id = :org_id"  # noqa: S608 - fixed fragments only
        f" AND {conditions} ORDER BY fix_time LIMIT :limit"
    )
    params: dict[str, object] = {
        "device_id": device_id,
        "org_id": org_id,
        "start": start,
        "limit": ROUTE_MAX_POINTS,
    }
    if end is not None:
        params["end"] = end
    rows = (await session.execute(query, params)).all()
    return [(float(lon), float(lat)) for lon, lat in rows]
