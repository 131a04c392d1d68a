"""request hash next to each idempotency key

Revision ID: 0009
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ('signing_requests', 'batches'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('request_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))


def downgrade() -> None:
    for table in ('batches', 'signing_requests'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('request_hash')
