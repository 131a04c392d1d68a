"""lifecycle and security review: key expiry, document deletion, audit head, webhook secret rotation

Revision ID: 0007
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('organisations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('webhook_secret_generation', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('webhook_previous_valid_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))

    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))

    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deleted_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))

    with op.batch_alter_table('signing_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('audit_head_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('audit_count', sa.Integer(), nullable=False, server_default='0'))

    # the trail as it stands becomes the recorded head: its last entry's hash and its number of entries
    op.execute(
        "UPDATE signing_requests SET "
        "audit_count = (SELECT COUNT(*) FROM audit_entries a WHERE a.request_id = signing_requests.id), "
        "audit_head_hash = (SELECT a.entry_hash FROM audit_entries a WHERE a.request_id = signing_requests.id "
        "ORDER BY a.seq DESC LIMIT 1)"
    )


def downgrade() -> None:
    with op.batch_alter_table('signing_requests', schema=None) as batch_op:
        batch_op.drop_column('audit_count')
        batch_op.drop_column('audit_head_hash')

    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.drop_column('deleted_at')

    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_column('expires_at')

    with op.batch_alter_table('organisations', schema=None) as batch_op:
        batch_op.drop_column('webhook_previous_valid_until')
        batch_op.drop_column('webhook_secret_generation')
