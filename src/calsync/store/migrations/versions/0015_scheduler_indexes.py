"""Scheduler indexes: due work found through indexes at 100,000 bindings.

The poll timer is read in order through `ix_bindings_next_poll_at`, so a binding without one (the
store wrote NULL for "due now" until this revision) gets its creation time: the claim asks for
`next_poll_at <= now` alone, which an index range answers. Bindings with local changes to push are
found through `ix_outbox_status_next_attempt_at_binding_id` (an index-only range of the due rows).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sa.text("UPDATE bindings SET next_poll_at = created_at WHERE next_poll_at IS NULL"))
    with op.batch_alter_table("bindings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bindings_next_poll_at"), ["next_poll_at"], unique=False)
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_outbox_status_next_attempt_at_binding_id"),
            ["status", "next_attempt_at", "binding_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_status_next_attempt_at_binding_id"))
    with op.batch_alter_table("bindings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bindings_next_poll_at"))
