import uuid
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from milepost_common.domain.models import metadata
from milepost_common.migrations.objects import include_object


def _diff(sync_conn: object) -> list[object]:
    context = MigrationContext.configure(
        sync_conn,  # type: ignore[arg-type]
        opts={"include_object": include_object, "compare_type": True},
    )
    return list(compare_metadata(context, metadata))


async def test_models_and_migrations_do_not_drift(connection: AsyncConnection) -> None:
    assert await connection.run_sync(_diff) == []


async def test_partitions_cover_the_window(connection: AsyncConnection) -> None:
    names = set(
        (
            await connection.execute(
                text(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'positions'::regclass"
                )
            )
        ).scalars()
    )
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
