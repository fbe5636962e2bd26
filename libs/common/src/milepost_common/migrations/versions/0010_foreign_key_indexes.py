"""Indexes on the ON DELETE SET NULL foreign keys that had none

Deleting a user or an API key makes Postgres find the rows that reference it: with no index
on alerts.acknowledged_by, api_keys.created_by_id and ingest_batches.api_key_id, each delete
scanned those tables platform-wide (an organization's hard delete hit the statement timeout
at scale). Partial (IS NOT NULL): only the rows that reference someone are indexed, which is
all the foreign key's lookups need.

Built concurrently (docs/operations.md: a migration adds an index built concurrently), and
safe to run again after a build cut short. The same rerun repairs 0007's index where two
migrators at once left it invalid before milepost-migrate waited for its lock safely.

Revision ID: 0010_foreign_key_indexes
Revises: 0009_schema_revisions
Create Date: 2026-12-12 10:00:00
"""

from collections.abc import Sequence

from alembic import op

from milepost_common.migrations.indexes import create_index_concurrently

revision: str = "0010_foreign_key_indexes"
down_revision: str | None = "0009_schema_revisions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (index, table, column): a partial index on the column where it is set.
FOREIGN_KEY_INDEXES = (
    ("ix_alerts_acknowledged_by", "alerts", "acknowledged_by"),
    ("ix_api_keys_created_by_id", "api_keys", "created_by_id"),
    ("ix_ingest_batches_api_key_id", "ingest_batches", "api_key_id"),
)


def upgrade() -> None:
    for name, table, column in FOREIGN_KEY_INDEXES:
        create_index_concurrently(name, table, column, where=f"{column} IS NOT NULL")
    # A no-op where 0007's index is valid.
    create_index_concurrently(
        "ix_ingest_batches_rejected_expiry",
        "ingest_batches",
        "rejected_items_expire_at",
        where="rejected_items_expire_at IS NOT NULL",
    )


def downgrade() -> None:
    for name, table, _ in reversed(FOREIGN_KEY_INDEXES):
        op.drop_index(name, table_name=table)
