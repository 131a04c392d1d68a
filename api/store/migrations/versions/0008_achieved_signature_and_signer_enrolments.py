"""achieved signature on requests and batch items, batch mode, signer enrolments

Revision ID: 0008
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('signing_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('signature_json', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    with op.batch_alter_table('batch_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('signature_json', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mode', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False,
                                      server_default='pdf'))
    op.create_table('signer_enrolments',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('organisation_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('signer_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('flow', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
    sa.Column('statement', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('request_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('cert_der_b64', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('cert_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('issuer', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('serial', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
    sa.Column('not_before', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('not_after', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('error_code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('error_message', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('organisation_id', 'signer_key', name='uq_enrolment_signer')
    )
    with op.batch_alter_table('signer_enrolments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signer_enrolments_organisation_id'), ['organisation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_signer_enrolments_signer_key'), ['signer_key'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('signer_enrolments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signer_enrolments_signer_key'))
        batch_op.drop_index(batch_op.f('ix_signer_enrolments_organisation_id'))
    op.drop_table('signer_enrolments')
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.drop_column('mode')
    with op.batch_alter_table('batch_items', schema=None) as batch_op:
        batch_op.drop_column('signature_json')
    with op.batch_alter_table('signing_requests', schema=None) as batch_op:
        batch_op.drop_column('signature_json')
