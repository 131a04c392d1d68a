"""envelopes: several signers in order, one step each

Revision ID: 0010
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('envelopes',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('organisation_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('document_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('level', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('location', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('webhook_url', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
    sa.Column('current_step', sa.Integer(), nullable=False),
    sa.Column('step_count', sa.Integer(), nullable=False),
    sa.Column('ended_step', sa.Integer(), nullable=True),
    sa.Column('signed_document_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('error_code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('error_message', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['document_id'], ['documents.id'], ),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('envelopes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_envelopes_organisation_id'), ['organisation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_envelopes_status'), ['status'], unique=False)
    op.create_table('envelope_steps',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('envelope_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('signer_kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('signer_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('signer_sealed', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('appearance_json', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('request_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('document_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('signed_document_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('error_code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('error_message', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['envelope_id'], ['envelopes.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('envelope_id', 'position', name='uq_envelope_step_position')
    )
    with op.batch_alter_table('envelope_steps', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_envelope_steps_envelope_id'), ['envelope_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_envelope_steps_request_id'), ['request_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('envelope_steps', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_envelope_steps_request_id'))
        batch_op.drop_index(batch_op.f('ix_envelope_steps_envelope_id'))
    op.drop_table('envelope_steps')
    with op.batch_alter_table('envelopes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_envelopes_status'))
        batch_op.drop_index(batch_op.f('ix_envelopes_organisation_id'))
    op.drop_table('envelopes')
