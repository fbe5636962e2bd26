"""``milepost-migrate``: upgrade the shared schema to head and create position partitions.

Safe when several processes start at once: a Postgres advisory lock serialises them, and the
ones that wait find the schema already at head.
"""

from __future__ import annotations

import argparse
import asyncio
from importlib.resources import files

from alembic import command
from alembic.config import Config
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from milepost_common.settings import CommonSettings, load_settings

MIGRATION_LOCK_KEY = 0x6D696C65  # "mile"
PARTITION_DAYS_AHEAD = 2
DEFAULT_RETENTION_DAYS = 365


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(files("milepost_common") / "migrations"))
    return cfg


def _upgrade(connection: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


async def ensure_partitions(conn: AsyncConnection, days_back: int | None = None) -> int:
    """Create daily partitions from today − the longest retention to today + 2 days."""
    if days_back is None:
        longest = await conn.scalar(text("SELECT max(retention_days) FROM organizations"))
        days_back = max(longest or 0, DEFAULT_RETENTION_DAYS)
    created = await conn.scalar(
        text(
            "SELECT milepost_ensure_position_partitions("
            "(now() AT TIME ZONE 'UTC')::date - CAST(:back AS integer), "
            "(now() AT TIME ZONE 'UTC')::date + CAST(:ahead AS integer))"
        ),
        {"back": days_back, "ahead": PARTITION_DAYS_AHEAD},
    )
    return int(created or 0)


async def migrate(
    url: str, *, revision: str = "heads", partition_days_back: int | None = None
) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            await conn.commit()
            try:
                await conn.run_sync(_upgrade, revision)
                await conn.commit()
                if revision in ("head", "heads"):
                    await ensure_partitions(conn, partition_days_back)
                    await conn.commit()
            except BaseException:
                await conn.rollback()
                raise
            finally:
                await conn.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
                await conn.commit()
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description="Upgrade the Milepost database schema.")
    parser.add_argument("--revision", default="heads")
    parser.add_argument(
        "--partition-days-back",
        type=int,
        default=None,
        help="Days of position partitions to create behind today "
        "(default: the longest organization retention).",
    )
    args = parser.parse_args()
    settings = load_settings(CommonSettings)
    asyncio.run(
        migrate(
            settings.db.url, revision=args.revision, partition_days_back=args.partition_days_back
        )
    )


if __name__ == "__main__":
    main()
