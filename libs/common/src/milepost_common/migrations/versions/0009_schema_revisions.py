"""schema_revisions: every revision applied to the database, so a release knows a newer schema

alembic_version holds only the newest revision, an id an older release does not know: its
`milepost-migrate --check` could not tell a newer schema from a foreign one. This table keeps
each revision applied (env.py records every step, and deletes the ones downgraded), so the
check passes once its own head is among them: a pod of the previous release still starts on
the newer schema during a rollout or a rollback. Not a model (the autogenerate filter skips it).

Revision ID: 0009_schema_revisions
Revises: 0008_user_sessions_ended
Create Date: 2026-12-12 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_schema_revisions"
down_revision: str | None = "0008_user_sessions_ended"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Applied before this table existed (their recorded_at is this migration's): the whole, linear,
# history up to this revision.
EARLIER = (
    "0001",
    "0003_worker",
    "0004_retention_watermark",
    "0005_tenure_lease_sso",
    "0006_device_offline_since",
    "0007_rejected_items_expiry",
    "0008_user_sessions_ended",
)


def upgrade() -> None:
    table = op.create_table(
        "schema_revisions",
        sa.Column("revision", sa.String(64), primary_key=True),
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
    )
    op.bulk_insert(table, [{"revision": earlier} for earlier in EARLIER])


def downgrade() -> None:
    op.drop_table("schema_revisions")
