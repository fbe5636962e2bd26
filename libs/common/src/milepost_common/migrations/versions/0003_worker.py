"""worker: motion checkpoints, positions by batch

Revision ID: 0003_worker
Revises: 0001
Create Date: 2026-11-22 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003_worker"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "motion_checkpoints",
        sa.Column("device_id", sa.Uuid(), nullable=False),
        sa.Column("anchor_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("state", postgresql.JSONB(astext_type=sa.Text()),
                  server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("device_id", "anchor_time"),
    )
    op.create_index(op.f("ix_motion_checkpoints_org_id"), "motion_checkpoints", ["org_id"],
                    unique=False)
    op.create_index("ix_positions_batch_id", "positions", ["batch_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_positions_batch_id", table_name="positions")
    op.drop_index(op.f("ix_motion_checkpoints_org_id"), table_name="motion_checkpoints")
    op.drop_table("motion_checkpoints")
