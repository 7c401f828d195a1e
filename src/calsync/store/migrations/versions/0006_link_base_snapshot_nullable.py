"""A link's base_snapshot may be NULL: the base is then the event's own content (written down only
when the event changes), so an initial sync does not store every event's content twice.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("event_links", schema=None) as batch_op:
        batch_op.alter_column("base_snapshot", existing_type=_JSON, nullable=True)


def downgrade() -> None:
    op.execute(
        "UPDATE event_links SET base_snapshot = '{}' WHERE base_snapshot IS NULL"
    )  # (the content is gone from the link; an empty base only shows less in a conflict)
    with op.batch_alter_table("event_links", schema=None) as batch_op:
        batch_op.alter_column("base_snapshot", existing_type=_JSON, nullable=False)
