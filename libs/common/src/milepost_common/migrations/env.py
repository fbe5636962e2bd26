"""The one Alembic environment of the shared database (async, asyncpg)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from typing import Any

from alembic import context
from alembic.runtime.migration import MigrationContext, MigrationInfo
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from milepost_common.domain.models import metadata
from milepost_common.migrations.objects import include_object

config = context.config


def record_revision(
    ctx: MigrationContext,
    step: MigrationInfo,
    heads: Collection[str],  # noqa: ARG001 - Alembic passes these four by name
    run_args: Mapping[str, Any],  # noqa: ARG001
) -> None:
    """Keep schema_revisions (0009) in step with each migration, in its transaction: what is
    applied is recorded, what is downgraded is deleted (nothing before the table exists)."""
    connection = ctx.connection
    if (
        connection is None
        or connection.scalar(text("SELECT to_regclass('schema_revisions')")) is None
    ):
        return
    for revision in step.up_revision_ids:
        if step.is_upgrade:
            connection.execute(
                text("INSERT INTO schema_revisions (revision) VALUES (:r) ON CONFLICT DO NOTHING"),
                {"r": revision},
            )
        else:
            connection.execute(
                text("DELETE FROM schema_revisions WHERE revision = :r"), {"r": revision}
            )


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_object=include_object,
        compare_type=True,
        compare_server_default=False,
        on_version_apply=record_revision,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online(url: str) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    async with engine.connect() as conn:
        await conn.run_sync(_configure)
    await engine.dispose()


def run() -> None:
    existing: Any = config.attributes.get("connection")
    if existing is not None:  # called from milepost-migrate or a test with a live connection
        _configure(existing)
        return
    asyncio.run(_run_online(config.get_main_option("sqlalchemy.url") or ""))


run()
