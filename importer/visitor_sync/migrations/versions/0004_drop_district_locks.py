"""drop district_locks

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

The district lock is no longer a row (a killed run left it behind for hours) but a
PostgreSQL session advisory lock or a file lock beside the SQLite database, both
released when their process dies; see visitor_sync.locking.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("district_locks")


def downgrade() -> None:
    op.create_table(
        "district_locks",
        sa.Column("district_id", sa.String(length=63), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("district_id", name=op.f("pk_district_locks")),
    )
