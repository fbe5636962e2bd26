"""users.sessions_ended_at: sessions begun before it are over

A console session lives in Redis for up to 8 hours; a password change or reset and a
deactivation stamp the user, and a session begun before the stamp is refused.

Revision ID: 0008_user_sessions_ended
Revises: 0007_rejected_items_expiry
Create Date: 2026-12-07 00:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_user_sessions_ended"
down_revision: str | None = "0007_rejected_items_expiry"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL: no session of the user was ever ended this way (a metadata-only change).
    op.add_column(
        "users", sa.Column("sessions_ended_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("users", "sessions_ended_at")
