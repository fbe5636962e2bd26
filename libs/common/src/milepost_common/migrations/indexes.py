"""Indexes built concurrently by the migrations, safe to build again after a build cut short.

``CREATE INDEX CONCURRENTLY`` that fails or is cancelled part way (a killed migrator, a
deadlock, a timeout) leaves the index behind, marked invalid: never used by a query, yet
skipped by ``IF NOT EXISTS``. The migration did not finish, so it runs again: it drops the
invalid leftover first. (Migrations run one at a time, under milepost-migrate's lock.)
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text


def create_index_concurrently(name: str, table: str, columns: str, where: str | None) -> None:
    """Build ``name`` on ``table (columns) [WHERE where]`` outside the migration's transaction
    (writers go on meanwhile), replacing an invalid leftover; a valid one is kept."""
    bind = op.get_bind()
    with op.get_context().autocommit_block():
        # No lock timeout here: the build blocks no reader or writer while it waits.
        timeout = bind.scalar(text("SELECT current_setting('lock_timeout')"))
        bind.execute(text("SET lock_timeout = 0"))
        invalid = bind.scalar(
            text("SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"),
            {"name": name},
        )
        if invalid:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        predicate = f" WHERE {where}" if where else ""
        op.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} ({columns}){predicate}"
        )
        bind.execute(
            text("SELECT set_config('lock_timeout', :timeout, false)"), {"timeout": timeout}
        )
