"""run report sent

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

Generated with ``alembic revision --autogenerate`` against the models, then
checked by hand: the server default is ``sa.false()`` (autogenerate wrote
``sa.text('0')``, which PostgreSQL refuses for a boolean column).
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:

    with op.batch_alter_table("import_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("report_sent", sa.Boolean(), server_default=sa.false(),
                                      nullable=False))


def downgrade() -> None:

    with op.batch_alter_table("import_runs", schema=None) as batch_op:
        batch_op.drop_column("report_sent")
