"""Index of a binding's exception links (attaching orphan exceptions without a table scan).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("event_links", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_event_links_binding_id_series_remote_id_event_id"),
            ["binding_id", "series_remote_id", "event_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("event_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_event_links_binding_id_series_remote_id_event_id"))
