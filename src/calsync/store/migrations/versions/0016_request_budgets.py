"""Request budgets per account (a token bucket kept as one number, GCRA) and the time a binding of
the account was last claimed, which the scheduler's claim orders by to go round the accounts.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("budget_spent_until", sa.Float(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("served_at", sa.DateTime(timezone=True), nullable=True))
    # the notified bindings, claimed before the poll backlog through an index of their own
    op.create_index(
        "ix_bindings_dirty_at",
        "bindings",
        ["dirty_at"],
        postgresql_where=sa.text("dirty_at IS NOT NULL"),
        sqlite_where=sa.text("dirty_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_bindings_dirty_at", table_name="bindings")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("served_at")
        batch_op.drop_column("budget_spent_until")
