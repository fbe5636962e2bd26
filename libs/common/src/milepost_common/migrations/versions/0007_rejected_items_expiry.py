"""ingest_batches: a partial index on rejected_items_expire_at, for retention's clearing

Retention empties the rejected items past their expiry (7 days) in bounded batches; the index
holds only the batches still keeping some, so a batch of them is found without a scan.

Built concurrently (docs/operations.md: a migration adds an index built concurrently).

Revision ID: 0007_rejected_items_expiry
Revises: 0006_device_offline_since
Create Date: 2026-12-06 15:30:00
"""

from collections.abc import Sequence

from alembic import op

from milepost_common.migrations.indexes import create_index_concurrently

revision: str = "0007_rejected_items_expiry"
down_revision: str | None = "0006_device_offline_since"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Concurrently: ingest keeps writing batches while it builds. A build cut short left an
    # invalid index behind: it is dropped and built again.
    create_index_concurrently(
        "ix_ingest_batches_rejected_expiry",
        "ingest_batches",
        "rejected_items_expire_at",
        where="rejected_items_expire_at IS NOT NULL",
    )


def downgrade() -> None:
    op.drop_index("ix_ingest_batches_rejected_expiry", table_name="ingest_batches")
