"""Users and API keys: every account and local calendar gets an owner. A default user (name
"default", admin) is made and given every existing account and calendar, so a database from before
users keeps working as it did, for that one user.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08
"""

import os
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    users = op.create_table(
        "users",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("prefix", sa.String(24), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_api_keys_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
    )
    op.create_index(op.f("ix_api_keys_user_id"), "api_keys", ["user_id"])
    bind = op.get_bind()
    tables = ("accounts", "calendars")
    existing = [bind.execute(sa.select(sa.literal(1)).select_from(sa.table(t))).first() for t in tables]
    # a new database has no user yet: its first is whoever is made first (store/users.default_owner)
    default_id = os.urandom(16).hex() if any(existing) else None  # store.common.new_id's form
    if default_id is not None:
        now = datetime.now(UTC)
        op.bulk_insert(
            users,
            [
                {
                    "id": default_id,
                    "name": "default",
                    "is_admin": True,
                    "created_at": now.replace(tzinfo=None) if bind.dialect.name == "sqlite" else now,
                }
            ],
        )
    for table in ("accounts", "calendars"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("user_id", sa.String(32), nullable=True))
        if default_id is not None:
            op.execute(sa.table(table, sa.column("user_id")).update().values(user_id=default_id))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column("user_id", existing_type=sa.String(32), nullable=False)
            batch_op.create_foreign_key(op.f(f"fk_{table}_user_id_users"), "users", ["user_id"], ["id"])
            batch_op.create_index(op.f(f"ix_{table}_user_id"), ["user_id"])


def downgrade() -> None:
    for table in ("calendars", "accounts"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(op.f(f"ix_{table}_user_id"))
            batch_op.drop_constraint(op.f(f"fk_{table}_user_id_users"), type_="foreignkey")
            batch_op.drop_column("user_id")
    op.drop_index(op.f("ix_api_keys_user_id"), table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("users")
