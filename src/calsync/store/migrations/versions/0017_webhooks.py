"""Outbound webhooks: a user's subscriptions (URL, change kinds, optional calendar, the signing secret
sealed, the cursor into the change journal) and their deliveries (the signed message, its retry state
and lease). store/hooks.py reads and writes them.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON(none_as_null=True).with_variant(sa.dialects.postgresql.JSONB(none_as_null=True), "postgresql")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "webhook_subscriptions",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("events", Json, nullable=False),
        sa.Column("calendar_id", sa.String(32)),
        sa.Column("secret_sealed", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("disabled_reason", sa.Text()),
        sa.Column("last_position", sa.BigInteger(), nullable=False),
        sa.Column("paused_until", sa.DateTime(timezone=True)),
        sa.Column("created_at", When, nullable=False),
        sa.Column("updated_at", When, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_webhook_subscriptions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_subscriptions")),
    )
    op.create_index(op.f("ix_webhook_subscriptions_user_id"), "webhook_subscriptions", ["user_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("subscription_id", sa.String(32), nullable=False),
        sa.Column("message_id", sa.String(40), nullable=False),
        sa.Column("event_id", sa.String(32), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("payload", Json, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", When, nullable=False),
        sa.Column("first_attempt_at", When),
        sa.Column("last_attempt_at", When),
        sa.Column("last_status", sa.Integer()),
        sa.Column("last_error", sa.Text()),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_until", When),
        sa.Column("created_at", When, nullable=False),
        sa.Column("delivered_at", When),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["webhook_subscriptions.id"],
            name=op.f("fk_webhook_deliveries_subscription_id_webhook_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("message_id", name=op.f("uq_webhook_deliveries_message_id")),
    )
    op.create_index(
        op.f("ix_webhook_deliveries_status_next_attempt_at"), "webhook_deliveries", ["status", "next_attempt_at"]
    )
    op.create_index(
        op.f("ix_webhook_deliveries_subscription_id_event_id_status"),
        "webhook_deliveries",
        ["subscription_id", "event_id", "status"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_webhook_deliveries_subscription_id_event_id_status"), table_name="webhook_deliveries")
    op.drop_index(op.f("ix_webhook_deliveries_status_next_attempt_at"), table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index(op.f("ix_webhook_subscriptions_user_id"), table_name="webhook_subscriptions")
    op.drop_table("webhook_subscriptions")
