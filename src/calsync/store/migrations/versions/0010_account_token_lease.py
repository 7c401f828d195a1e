"""An account's token-refresh lease: one worker at a time asks the token endpoint for an account
(store/token_leases.py).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("token_lease_owner", sa.String(32)))
        batch_op.add_column(sa.Column("token_lease_until", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("token_lease_until")
        batch_op.drop_column("token_lease_owner")
