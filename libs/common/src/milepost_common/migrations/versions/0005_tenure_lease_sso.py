"""device tenure, batch processing leases, operators' SSO identity

Revision ID: 0005_tenure_lease_sso
Revises: 0004_retention_watermark
Create Date: 2026-12-06 09:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_tenure_lease_sso"
down_revision: str | None = "0004_retention_watermark"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL: the device has had one organization since it was registered (no lower bound).
    op.add_column("devices", sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "ingest_batches", sa.Column("lease_holder", sa.String(length=128), nullable=True)
    )
    op.add_column(
        "ingest_batches",
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_ingest_batches_lease",
        "ingest_batches",
        ["lease_expires_at"],
        unique=False,
        postgresql_where=sa.text("status = 'processing'"),
    )
    op.add_column("users", sa.Column("sso_issuer", sa.String(length=512), nullable=True))
    op.add_column("users", sa.Column("sso_subject", sa.String(length=255), nullable=True))
    op.create_index(
        "uq_users_sso_identity",
        "users",
        ["sso_issuer", "sso_subject"],
        unique=True,
        postgresql_where=sa.text("sso_subject IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_users_sso_identity", table_name="users")
    op.drop_column("users", "sso_subject")
    op.drop_column("users", "sso_issuer")
    op.drop_index("ix_ingest_batches_lease", table_name="ingest_batches")
    op.drop_column("ingest_batches", "lease_expires_at")
    op.drop_column("ingest_batches", "lease_holder")
    op.drop_column("devices", "assigned_at")
