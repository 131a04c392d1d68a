"""signing request state secret and signer sessions

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("signing_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True))
    # requests already sent told iAM Smart state=businessID: keep what it will echo for them
    op.execute(sa.text("UPDATE signing_requests SET state = business_id WHERE state IS NULL"))
    with op.batch_alter_table("signing_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_signing_requests_state"), ["state"], unique=True)

    op.create_table(
        "signer_sessions",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("signer_key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("token_sealed", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("user_type", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("signer_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_signer_sessions_signer_key"), ["signer_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_signer_sessions_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("signer_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signer_sessions_expires_at"))
        batch_op.drop_index(batch_op.f("ix_signer_sessions_signer_key"))
    op.drop_table("signer_sessions")
    with op.batch_alter_table("signing_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signing_requests_state"))
        batch_op.drop_column("state")
