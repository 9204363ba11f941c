"""visitor-student link custody

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

PowerSchool's contacts export states custody per contact and student ("Contact Has
Custody"), separately from pickup permission. It is stored as read (NULL: the file
did not say) instead of being folded into can_pickup.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:

    with op.batch_alter_table("visitor_student_links", schema=None) as batch_op:
        batch_op.add_column(sa.Column("has_custody", sa.Boolean(), nullable=True))


def downgrade() -> None:

    with op.batch_alter_table("visitor_student_links", schema=None) as batch_op:
        batch_op.drop_column("has_custody")
