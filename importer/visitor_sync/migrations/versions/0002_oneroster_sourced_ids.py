"""oneroster sourced ids

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    with op.batch_alter_table("schools", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sourced_id", sa.Text(), nullable=True))

    with op.batch_alter_table("students", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sourced_id", sa.Text(), nullable=True))
        batch_op.alter_column("date_of_birth", existing_type=sa.DATE(), nullable=True)

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sourced_id", sa.Text(), nullable=True))

    with op.batch_alter_table("visitors", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sourced_id", sa.Text(), nullable=True))


def downgrade() -> None:

    with op.batch_alter_table("visitors", schema=None) as batch_op:
        batch_op.drop_column("sourced_id")

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("sourced_id")

    with op.batch_alter_table("students", schema=None) as batch_op:
        batch_op.alter_column("date_of_birth", existing_type=sa.DATE(), nullable=False)
        batch_op.drop_column("sourced_id")

    with op.batch_alter_table("schools", schema=None) as batch_op:
        batch_op.drop_column("sourced_id")
