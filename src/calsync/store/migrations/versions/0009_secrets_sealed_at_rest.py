"""Secrets sealed at rest: accounts' credentials move from the plain JSON column `credentials` to
`credentials_sealed` ("v1:<key id>:<Fernet token>", store/sealing.py), and push channels' tokens
are sealed in place. Sealing needs the key: from CALSYNC_SECRET_KEY, else the key file (made here,
mode 0600, when there is none and something is to be sealed). The plain column is dropped in the
same transaction, so no copy of a secret stays behind in the table.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

from calsync.store import keys

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value  # SQLite gives text, PostgreSQL a dict


def upgrade() -> None:
    conn = op.get_bind()
    op.add_column("accounts", sa.Column("credentials_sealed", sa.Text(), nullable=False, server_default=""))
    rows = conn.execute(sa.text("SELECT id, credentials FROM accounts")).all()
    for row_id, credentials in rows:
        sealed = keys.seal(conn, json.dumps(_json(credentials)))
        conn.execute(sa.text("UPDATE accounts SET credentials_sealed = :s WHERE id = :id"), {"s": sealed, "id": row_id})
    # SQLite drops a column in place (3.35+); a batch rebuild would drop the table the bindings refer to
    op.execute("ALTER TABLE accounts DROP COLUMN credentials")
    tokens = conn.execute(sa.text("SELECT id, token FROM channels WHERE token IS NOT NULL AND token <> ''")).all()
    for row_id, token in tokens:
        if not token.startswith("v1:"):
            conn.execute(
                sa.text("UPDATE channels SET token = :t WHERE id = :id"), {"t": keys.seal(conn, token), "id": row_id}
            )


def downgrade() -> None:
    conn = op.get_bind()
    json_type = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
    op.add_column("accounts", sa.Column("credentials", json_type, nullable=False, server_default="{}"))
    rows = conn.execute(sa.text("SELECT id, credentials_sealed FROM accounts")).all()
    for row_id, sealed in rows:
        plain = keys.open_sealed(conn, sealed, f"the credentials of account {row_id}")
        conn.execute(
            sa.text("UPDATE accounts SET credentials = :c WHERE id = :id").bindparams(
                sa.bindparam("c", type_=json_type)
            ),
            {"c": json.loads(plain), "id": row_id},
        )
    op.execute("ALTER TABLE accounts DROP COLUMN credentials_sealed")
    tokens = conn.execute(sa.text("SELECT id, token FROM channels WHERE token LIKE 'v1:%'")).all()
    for row_id, token in tokens:
        plain = keys.open_sealed(conn, token, f"the token of push channel {row_id}")
        conn.execute(sa.text("UPDATE channels SET token = :t WHERE id = :id"), {"t": plain, "id": row_id})
