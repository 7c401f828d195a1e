"""Google service-account keys stored once (store/service_keys.py): accounts acting for many users
through one key (domain-wide delegation) name it instead of each holding a copy.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "service_account_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("client_email", sa.Text(), nullable=False),
        sa.Column("private_key_id", sa.Text(), nullable=False),
        sa.Column("key_sealed", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("client_email", "private_key_id", name="uq_service_account_keys_key"),
    )


def downgrade() -> None:
    op.drop_table("service_account_keys")
