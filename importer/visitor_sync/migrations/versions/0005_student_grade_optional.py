"""student grade optional

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

OneRoster's ``grades`` is optional (1EdTech OneRoster 1.1 CSV Tables and 1.2
CSV Binding, users.csv), so a student a roster sends without one is stored
with no grade (unknown) instead of being rejected. students.csv still
requires Grade through its row model.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:

    with op.batch_alter_table("students", schema=None) as batch_op:
        batch_op.alter_column("grade", existing_type=sa.String(length=5), nullable=True)


def downgrade() -> None:

    with op.batch_alter_table("students", schema=None) as batch_op:
        batch_op.alter_column("grade", existing_type=sa.String(length=5), nullable=False)
