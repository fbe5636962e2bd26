"""organizations.retention_applied_until: how far the per-organization retention has deleted

Revision ID: 0004_retention_watermark
Revises: 0003_worker
Create Date: 2026-11-22 03:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_retention_watermark"
down_revision: str | None = "0003_worker"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "organizations",
        sa.Column("retention_applied_until", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("organizations", "retention_applied_until")
