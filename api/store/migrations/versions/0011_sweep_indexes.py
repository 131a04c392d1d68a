"""indexes for the sweep's scans of signing requests and batches

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

INDEXES = {
    'signing_requests': (
        ('ix_sr_sweep_expiry', ['status', 'phase', 'expires_at']),
        ('ix_sr_sweep_stale', ['status', 'phase', 'updated_at']),
    ),
    'batches': (
        ('ix_batch_sweep_expiry', ['status', 'phase', 'expires_at']),
        ('ix_batch_sweep_stale', ['status', 'phase', 'updated_at']),
    ),
}


def upgrade() -> None:
    for table, indexes in INDEXES.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, columns in indexes:
                batch_op.create_index(name, columns, unique=False)


def downgrade() -> None:
    for table, indexes in INDEXES.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, _ in indexes:
                batch_op.drop_index(name)
