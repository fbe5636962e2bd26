import uuid
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from milepost_common.domain.models import metadata
from milepost_common.migrate import migrate
from milepost_common.migrations.objects import include_object


def _diff(sync_conn: object) -> list[object]:
    context = MigrationContext.configure(
        sync_conn,  # type: ignore[arg-type]
        opts={"include_object": include_object, "compare_type": True},
    )
    return list(compare_metadata(context, metadata))


async def test_models_and_migrations_do_not_drift(connection: AsyncConnection) -> None:
    assert await connection.run_sync(_diff) == []


PARTITION_NAMES = (
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = 'positions'::regclass"
)


async def test_partitions_cover_the_window(connection: AsyncConnection) -> None:
    names = set((await connection.execute(text(PARTITION_NAMES))).scalars())
    today = datetime.now(UTC).date()
    for offset in (-30, 0, 1, 2):
        assert f"positions_p{(today + timedelta(days=offset)):%Y%m%d}" in names
    assert not any(n.endswith("default") for n in names)


async def test_ensure_partitions_is_idempotent(connection: AsyncConnection) -> None:
    today = datetime.now(UTC).date()
    created = await connection.scalar(
        text("SELECT milepost_ensure_position_partitions(:a, :b)"),
        {"a": today, "b": today + timedelta(days=2)},
    )
    assert created == 0


async def test_a_long_window_is_created_a_run_of_days_at_a_time(committed_database: str) -> None:
    # Ten years in one transaction ran out of shared memory (every new table's locks are held
    # until commit) having created nothing. A stand-in failure, a day another partition
    # already covers, shows what the runs before it keep.
    today = datetime.now(UTC).date()
    blocked = today - timedelta(days=120)
    engine = create_async_engine(committed_database, poolclass=NullPool)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "CREATE TABLE positions_blocker PARTITION OF positions "
                f"FOR VALUES FROM ('{blocked}') TO ('{blocked + timedelta(days=1)}')"
            )
        )

    with pytest.raises(DBAPIError, match="overlap"):
        await migrate(committed_database, partition_days_back=160)

    async with engine.connect() as conn:
        names = set((await conn.execute(text(PARTITION_NAMES))).scalars())
    await engine.dispose()
    kept = {f"positions_p{today - timedelta(days=n):%Y%m%d}" for n in range(-2, 90)}
    assert kept - names == set()  # the run of the newest 100 days, committed
    assert f"positions_p{today - timedelta(days=160):%Y%m%d}" not in names


async def test_fix_without_partition_is_refused(connection: AsyncConnection) -> None:
    with pytest.raises(DBAPIError, match="no partition"):
        async with connection.begin_nested():
            await connection.execute(
                text(
                    "INSERT INTO positions (device_id, fix_time, org_id, lat, lon) "
                    "VALUES (:d, now() + interval '30 days', :o, 1, 1)"
                ),
                {"d": uuid.uuid4(), "o": uuid.uuid4()},
            )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET action = 'x'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ],
)
async def test_audit_log_is_append_only(connection: AsyncConnection, statement: str) -> None:
    await connection.execute(
        text(
            "INSERT INTO audit_log (id, actor_type, action, diff) "
            "VALUES (:id, 'system', 'test.x', '{}')"
        ),
        {"id": uuid.uuid4()},
    )
    with pytest.raises(DBAPIError, match="append-only"):
        async with connection.begin_nested():
            await connection.execute(text(statement))


# Each foreign key whose referencing columns lead no valid index ("table(columns)"): a delete
# (or key update) of a referenced row then scans the whole referencing table, in the FK's
# trigger. A partial index "WHERE column IS NOT NULL" serves it (the trigger looks up = value).
UNINDEXED_FOREIGN_KEYS = """
SELECT format('%s(%s)', c.conrelid::regclass, string_agg(a.attname, ', ' ORDER BY k.ord))
FROM pg_constraint c
CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
WHERE c.contype = 'f' AND c.conparentid = 0
  AND c.connamespace = 'public'::regnamespace
  AND NOT EXISTS (
    SELECT 1 FROM pg_index i
    WHERE i.indrelid = c.conrelid AND i.indisvalid
      AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] @> c.conkey
      AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] <@ c.conkey
      AND (
        i.indpred IS NULL
        OR (
          cardinality(c.conkey) = 1
          AND pg_get_expr(i.indpred, i.indrelid) = format(
            '(%s IS NOT NULL)',
            (SELECT quote_ident(attname) FROM pg_attribute
             WHERE attrelid = c.conrelid AND attnum = c.conkey[1])
          )
        )
      )
  )
GROUP BY c.oid, c.conrelid
ORDER BY 1
"""


async def test_every_foreign_key_leads_an_index(connection: AsyncConnection) -> None:
    unindexed = list((await connection.execute(text(UNINDEXED_FOREIGN_KEYS))).scalars())

    assert not unindexed, f"foreign keys leading no index: {', '.join(unindexed)}"
