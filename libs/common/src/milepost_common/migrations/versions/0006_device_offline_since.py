"""device_state.offline_since: the offline detection's mark (device.offline / device.online)

Revision ID: 0006_device_offline_since
Revises: 0005_tenure_lease_sso
Create Date: 2026-12-10 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_device_offline_since"
down_revision: str | None = "0005_tenure_lease_sso"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL: not marked offline (devices silent already are marked by the next detection run).
    op.add_column(
        "device_state", sa.Column("offline_since", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("device_state", "offline_since")
