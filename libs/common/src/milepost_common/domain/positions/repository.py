"""Statements on ``positions``: the write path (new fixes with conflict-skip, the partitions'
bounds) and the reads (a vehicle's history straight from the partitioned table, keyset on
``(device_id, fix_time)``, the primary key, sent by asyncpg; the fleet's latest fix from
``device_state``; a route's points; the worker's reads of a batch's fixes and of a device's
after a moment)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import orjson
from sqlalchemy import Row, Select, text
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from milepost_common.db import Reader
from milepost_common.domain.positions.models import Position
from milepost_common.domain.positions.schemas import LatestRow

# A stored fix as the worker reads it: device_id, org_id, fix_time, lat, lon, speed,
# accuracy, attributes, course, altitude.
StoredFix = Row[
    uuid.UUID,
    uuid.UUID,
    datetime,
    float,
    float,
    float | None,
    float | None,
    dict[str, Any] | None,
    float | None,
    float | None,
]


@dataclass(slots=True)
class NewPositions:
    """Fixes to store, one tuple each: ``(device_id, fix_time, lat, lon, speed, course,
    altitude, accuracy, attributes)``, ``attributes`` already JSON (an ``orjson.Fragment``).

    They travel as one JSON array parameter, serialized by orjson in one call: measured,
    that costs the app a third of the CPU of nine typed arrays encoded element by element
    for ``unnest``, for the same database work (bench/ingest/RESULTS.md).
    """

    rows: list[tuple[Any, ...]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def to_json(self) -> str:
        # str: ids that are not exactly uuid.UUID (asyncpg's own UUID type, for one).
        return orjson.dumps(self.rows, default=str).decode()


@dataclass(frozen=True, slots=True)
class DroppedFix:
    """A row the insert left out because its device, as stored now, does not take it: the
    caller's device cache was stale. ``ordinal``: 1-based, in ``NewPositions.rows``;
    ``gone``: deleted, or in another organization now."""

    ordinal: int
    gone: bool
    disabled: bool
    assigned_at: datetime | None


@dataclass(frozen=True, slots=True)
class InsertedPositions:
    count: int
    device_ids: list[uuid.UUID]
    dropped: list[DroppedFix] = field(default_factory=list)


def dropped_fixes(value: list[list[Any]]) -> list[DroppedFix]:
    """The ``dropped`` column of the statements below, read."""
    return [
        DroppedFix(int(n), gone, disabled, None if at is None else datetime.fromisoformat(at))
        for n, gone, disabled, at in value
    ]


# One round trip, duplicates skipped by the primary key (device_id, fix_time), whether they
# repeat within the batch or are already stored. The fixes arrive as one JSON array; the
# alternatives measured (nine typed arrays for unnest; COPY into a staging table, then the
# same INSERT … SELECT … ON CONFLICT DO NOTHING) cost the app more CPU for the same database
# work: bench/ingest/RESULTS.md. Parameters: org_id, batch_id, rows (NewPositions.to_json),
# valid (how many rows).
# Only a fix of an enabled device the organization holds, in its tenure, is written,
# whatever the caller's device cache says: the ingest's lags a transfer by seconds, and a
# fix the old organization pushed meanwhile would have taken the new one's (device_id,
# fix_time). ``dropped`` names the rows left out that way, so they are counted as rejected,
# not as duplicates; it reads the rows again only when fewer were inserted than sent (the
# one-time filter skips the scan otherwise), so a batch of new fixes costs no more.
# In the batch's order, so the first of two repeats is the one stored: a hash join (a large
# fleet's plan) returned them in another order, and the last one was stored.
INSERTED_CTE = """
    inserted AS (
        INSERT INTO positions (device_id, fix_time, org_id, lat, lon, speed, course, altitude,
                               accuracy, attributes, batch_id)
        SELECT d.id, (f->>1)::timestamptz, :org_id, (f->>2)::float8, (f->>3)::float8,
               (f->>4)::float8, (f->>5)::float8, (f->>6)::float8, (f->>7)::float8, f->8,
               :batch_id
        FROM jsonb_array_elements(CAST(:rows AS jsonb)) WITH ORDINALITY AS e(f, n)
        JOIN devices AS d ON d.id = (f->>0)::uuid AND d.org_id = :org_id AND NOT d.disabled
             AND (d.assigned_at IS NULL OR d.assigned_at <= (f->>1)::timestamptz)
        ORDER BY e.n
        ON CONFLICT DO NOTHING
        RETURNING device_id
    ),
    dropped AS (
        SELECT e.n, d.id IS NULL OR d.org_id <> :org_id AS gone, d.disabled, d.assigned_at
        FROM jsonb_array_elements(CAST(:rows AS jsonb)) WITH ORDINALITY AS e(f, n)
        LEFT JOIN devices AS d ON d.id = (f->>0)::uuid
        WHERE (SELECT count(*) FROM inserted) < CAST(:valid AS integer)
          AND (d.id IS NULL OR d.org_id <> :org_id OR d.disabled
               OR d.assigned_at > (f->>1)::timestamptz)
    )
"""
# The dropped rows as one JSON array of [ordinal, gone, disabled, assigned_at].
DROPPED_JSON = """(
    SELECT coalesce(jsonb_agg(jsonb_build_array(n, gone, coalesce(disabled, false),
                                                assigned_at) ORDER BY n), '[]'::jsonb)
    FROM dropped
)"""
INSERT_NEW_POSITIONS = text(
    f"""
    WITH {INSERTED_CTE}
    SELECT count(*) AS n, coalesce(array_agg(DISTINCT device_id), '{{}}') AS device_ids,
           {DROPPED_JSON} AS dropped
    FROM inserted
    """  # noqa: S608 - constant SQL
)

# Bounds of every range partition of ``positions``, read from the catalog: no DDL, no scan.
# Postgres prints the bounds with their UTC offset, so the casts are exact in any time zone.
_PARTITION_BOUNDS = text(
    """
    SELECT m[1]::timestamptz AS lower, m[2]::timestamptz AS upper
    FROM (
        SELECT regexp_match(pg_get_expr(c.relpartbound, c.oid),
                            'FROM \\(''([^'']+)''\\) TO \\(''([^'']+)''\\)') AS m
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'positions'::regclass
    ) AS partitions
    WHERE m IS NOT NULL
    ORDER BY 1
    """
)

# The partitions' names (``positions_pYYYYMMDD``), for retention, and the days of partitions
# ahead of today by the database's clock, for the worker's heartbeat.
_PARTITION_NAMES = text(
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'positions'"
)
_DAYS_AHEAD = text(
    "SELECT to_date(substr(max(c.relname), 12), 'YYYYMMDD')"
    " - (now() AT TIME ZONE 'UTC')::date FROM pg_inherits i"
    " JOIN pg_class c ON c.oid = i.inhrelid"
    " WHERE i.inhparent = 'positions'::regclass"
    " AND c.relname ~ '^positions_p[0-9]{8}$'"
)
# Until the transaction ends, a lock wait gives up after ``timeout`` (SQLSTATE 55P03): the
# partitions' DDL takes ACCESS EXCLUSIVE on positions, and every insert queues behind it.
_LOCAL_LOCK_TIMEOUT = text("SELECT set_config('lock_timeout', :timeout, true)")
# positions has no org_id index (it would slow every ingest write): the days before the
# organization's watermark (``since``) are deleted already, so only the partitions after it
# are read. The range is repeated on the outer DELETE: the subquery's alone prunes only the
# subquery, and the DELETE then scanned every partition to find its rows.
_DELETE_EXPIRED = text(
    "DELETE FROM positions WHERE fix_time >= :since AND fix_time < :cutoff "
    "AND (device_id, fix_time) IN (SELECT device_id, fix_time FROM positions "
    "WHERE org_id = :org AND fix_time >= :since AND fix_time < :cutoff LIMIT :n)"
)


# One round trip: the device check and the page. No row means no such device in this
# organization; one row of NULLs means the device exists and the page is empty. The time
# comes as the JSON string of the UTC timestamp, as text ('"2026-03-01T08:15:00.5"', the same
# whatever the session's DateStyle and TimeZone; text, not json, which SQLAlchemy's driver
# would decode): a string costs the api a fraction of a datetime to decode and to write out
# again (bench/api/RESULTS.md), for no Postgres CPU.
_HISTORY = """
SELECT to_json(p.fix_time AT TIME ZONE 'UTC')::text AS fix_time,
       p.lat, p.lon, p.speed, p.course, p.altitude, p.accuracy, p.attributes::text AS attributes
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


_LATEST = """
SELECT s.device_id::text, d.name, d.plate, s.last_fix_time, s.last_lat, s.last_lon,
       s.last_speed, s.last_course, s.last_altitude, s.last_accuracy,
       s.last_attributes::text
FROM device_state s
JOIN devices d ON d.id = s.device_id
WHERE d.org_id = $1 AND s.last_fix_time IS NOT NULL
  AND s.last_lat IS NOT NULL AND s.last_lon IS NOT NULL
ORDER BY s.last_fix_time, s.device_id
"""


class PositionReads:
    """The hot reads of positions: raw asyncpg statements on a :class:`Reader` (the app's
    read pool, or a session's connection), no ORM between the rows and the answer."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader

    async def history(
        self,
        device_id: uuid.UUID,
        org_id: uuid.UUID,
        *,
        limit: int,
        after: datetime | None,
        start: datetime | None,
        end: datetime | None,
        descending: bool,
    ) -> list[Any]:
        """Up to ``limit`` fixes of the device after ``after`` (the keyset), in ``[start,
        end)``, by ``fix_time``, as asyncpg records in :class:`PositionRow`'s columns (the
        time as JSON text): none when the organization has no such device, one of NULLs when
        it has and the page is empty."""
        args: list[object] = [device_id, org_id, limit]
        args.extend(bound for bound in (after, start, end) if bound is not None)
        statement = history_statement(
            has_after=after is not None,
            has_start=start is not None,
            has_end=end is not None,
            descending=descending,
        )
        return await self.reader.fetch(statement, *args)

    async def latest_for_org(self, org_id: uuid.UUID) -> list[LatestRow]:
        """Every vehicle of the organization with a fix, ascending by fix time then id; the
        vehicle's name and plate come in the same statement."""
        return [LatestRow(*row) for row in await self.reader.fetch(_LATEST, org_id)]


def _stored_fixes() -> Select[Any]:
    return sa_select(
        col(Position.device_id),
        col(Position.org_id),
        col(Position.fix_time),
        col(Position.lat),
        col(Position.lon),
        col(Position.speed),
        col(Position.accuracy),
        col(Position.attributes),
        col(Position.course),
        col(Position.altitude),
    )


class PositionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def fixes_of_batch(self, batch_id: uuid.UUID) -> Sequence[StoredFix]:
        query = _stored_fixes().where(col(Position.batch_id) == batch_id)
        rows: Sequence[StoredFix] = (await self.session.execute(query)).all()
        return rows

    async def fixes_of_device(
        self,
        device_id: uuid.UUID,
        org_id: uuid.UUID,
        lower: datetime | None,
        *,
        strict: bool,
        limit: int | None = None,
    ) -> Sequence[StoredFix]:
        """The device's fixes stored for the organization from ``lower`` on (after it, when
        ``strict``; None: all of them), in time order; the first ``limit`` (None: all)."""
        query = _stored_fixes().where(
            col(Position.device_id) == device_id, col(Position.org_id) == org_id
        )
        if lower is not None:
            query = query.where(
                col(Position.fix_time) > lower if strict else col(Position.fix_time) >= lower
            )
        ordered = query.order_by(col(Position.fix_time)).limit(limit)
        rows: Sequence[StoredFix] = (await self.session.execute(ordered)).all()
        return rows

    async def insert_new(
        self, org_id: uuid.UUID, batch_id: uuid.UUID, rows: NewPositions
    ) -> InsertedPositions:
        """Insert the rows not stored yet; report how many were new, for which devices, and
        the rows left out as their devices do not take them (see INSERTED_CTE)."""
        result = await self.session.execute(
            INSERT_NEW_POSITIONS,
            {"org_id": org_id, "batch_id": batch_id, "rows": rows.to_json(), "valid": len(rows)},
        )
        count, device_ids, dropped = result.one()
        return InsertedPositions(int(count), list(device_ids), dropped_fixes(dropped))

    async def last_fix_time(self, device_id: uuid.UUID) -> datetime | None:
        # One backward probe of the (device_id, fix_time) index per partition.
        result = await self.session.execute(
            text("SELECT max(fix_time) FROM positions WHERE device_id = :device_id"),
            {"device_id": device_id},
        )
        value: datetime | None = result.scalar_one()
        return value

    async def partition_bounds(self) -> list[tuple[datetime, datetime]]:
        """``[from, to)`` of every partition bounded by timestamps, oldest first."""
        result = await self.session.execute(_PARTITION_BOUNDS)
        return [(lower, upper) for lower, upper in result.all()]

    async def partition_names(self) -> list[str]:
        """The names of every partition, in no particular order."""
        return [str(name) for name in (await self.session.execute(_PARTITION_NAMES)).scalars()]

    async def days_ahead(self) -> int | None:
        """Days from today (UTC) to the last daily partition; None without one."""
        days = await self.session.scalar(_DAYS_AHEAD)
        return None if days is None else int(days)

    async def limit_lock_waits(self, timeout_ms: int) -> None:
        """Until this transaction ends, a statement waiting longer than ``timeout_ms`` for a
        lock fails (SQLSTATE 55P03, lock_not_available)."""
        await self.session.execute(_LOCAL_LOCK_TIMEOUT, {"timeout": f"{timeout_ms}ms"})

    # The statements of the next two are the migration runner's (``milepost-migrate`` runs
    # the same step), imported when called: it brings Alembic, which the apps reading
    # positions need not load.
    async def partition_runs(self) -> list[tuple[date, date]]:
        """The days from the longest retention back to two days ahead, as runs to create in
        a transaction each, the newest first."""
        from milepost_common.migrate import partition_runs

        return await partition_runs(await self.session.connection())

    async def create_partitions(self, first: date, last: date) -> int:
        """The missing daily partitions of ``[first, last]``, on this session's connection;
        how many were created."""
        from milepost_common.migrate import create_partitions_between

        return await create_partitions_between(await self.session.connection(), first, last)

    async def drop_partition(self, name: str) -> None:
        """Detach the partition, then drop it (``name`` is one ``partition_names`` read)."""
        await self.session.execute(text(f'ALTER TABLE positions DETACH PARTITION "{name}"'))
        await self.session.execute(text(f'DROP TABLE "{name}"'))

    async def delete_expired(
        self, org_id: uuid.UUID, since: datetime, cutoff: datetime, *, limit: int
    ) -> int:
        """Up to ``limit`` of the organization's fixes in ``[since, cutoff)``; how many went."""
        params = {"org": org_id, "since": since, "cutoff": cutoff, "n": limit}
        result = await self.session.execute(_DELETE_EXPIRED, params)
        return int(getattr(result, "rowcount", 0) or 0)

    async def route(
        self,
        device_id: uuid.UUID,
        org_id: uuid.UUID,
        start: datetime,
        end: datetime | None,
        *,
        limit: int,
    ) -> list[tuple[float, float]]:
        """``[lon, lat]`` points of a device between two times (inclusive), at most
        ``limit``."""
        conditions = "fix_time >= :start" + (" AND fix_time <= :end" if end is not None else "")
        query = text(
            f"SELECT lon, lat FROM positions WHERE device_id = :device_id AND org_id = :org_id"  # noqa: S608 - fixed fragments only
            f" AND {conditions} ORDER BY fix_time LIMIT :limit"
        )
        params: dict[str, object] = {
            "device_id": device_id,
            "org_id": org_id,
            "start": start,
            "limit": limit,
        }
        if end is not None:
            params["end"] = end
        rows = (await self.session.execute(query, params)).all()
        return [(float(lon), float(lat)) for lon, lat in rows]
