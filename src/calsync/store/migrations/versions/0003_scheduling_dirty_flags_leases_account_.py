"""Scheduling: dirty flags, leases, account backoff, channel confirmations.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("backoff_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("backoff_attempts", sa.Integer(), server_default="0", nullable=False))

    with op.batch_alter_table("bindings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dirty_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("next_poll_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_bindings_lease_until"), ["lease_until"], unique=False)

    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_message_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("messages", sa.Integer(), server_default="0", nullable=False))
        batch_op.create_index(batch_op.f("ix_channels_channel_id"), ["channel_id"], unique=False)

    with op.batch_alter_table("conference_outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conference_outbox", schema=None) as batch_op:
        batch_op.drop_column("lease_until")
        batch_op.drop_column("lease_owner")

    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_channels_channel_id"))
        batch_op.drop_column("messages")
        batch_op.drop_column("last_message_at")
        batch_op.drop_column("confirmed_at")

    with op.batch_alter_table("bindings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bindings_lease_until"))
        batch_op.drop_column("lease_until")
        batch_op.drop_column("lease_owner")
        batch_op.drop_column("next_poll_at")
        batch_op.drop_column("dirty_at")

    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("backoff_attempts")
        batch_op.drop_column("backoff_until")
