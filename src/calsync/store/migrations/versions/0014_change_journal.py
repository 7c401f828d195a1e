"""The change journal: one row per committed change of an event, the source of the change feed
(a position given after commit, in commit order) and of each event's history (diffs of the fields
that changed). store/journal.py writes and reads it.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

JournalId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON(none_as_null=True).with_variant(sa.dialects.postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    op.create_table(
        "event_changes",
        sa.Column("id", JournalId, autoincrement=True, nullable=False),
        sa.Column("position", sa.BigInteger()),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("calendar_id", sa.String(32), nullable=False),
        sa.Column("event_id", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("side", sa.String(32), nullable=False),
        sa.Column("author", sa.Text(), nullable=False),
        sa.Column("remote_etag", sa.Text()),
        sa.Column("fields", Json),
        sa.Column("diff", Json),
        sa.Column("conflict_id", sa.String(32)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_event_changes_event_id_events"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_changes")),
        sa.UniqueConstraint("position", name=op.f("uq_event_changes_position")),
    )
    op.create_index(op.f("ix_event_changes_user_id_position"), "event_changes", ["user_id", "position"])
    op.create_index(op.f("ix_event_changes_event_id_version"), "event_changes", ["event_id", "version"])
    op.create_index(
        "ix_event_changes_unsequenced",
        "event_changes",
        ["id"],
        postgresql_where=sa.text("position IS NULL"),
        sqlite_where=sa.text("position IS NULL"),
    )
    op.create_table(
        "journal_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sequenced_through", sa.BigInteger(), nullable=False),
        sa.Column("pruned_through", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journal_state")),
    )
    op.execute("INSERT INTO journal_state (id, sequenced_through, pruned_through) VALUES (1, 0, 0)")


def downgrade() -> None:
    op.drop_table("journal_state")
    op.drop_index("ix_event_changes_unsequenced", table_name="event_changes")
    op.drop_index(op.f("ix_event_changes_event_id_version"), table_name="event_changes")
    op.drop_index(op.f("ix_event_changes_user_id_position"), table_name="event_changes")
    op.drop_table("event_changes")
