"""Every tombstone says who deleted the event and what proved it (deleted_by, deletion_proof), and a
conflict keeps the proof of a remote deletion it carries: a deletion calsync propagates must trace
back to a deletion someone made.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deleted_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("deletion_proof", sa.Text(), nullable=True))
    with op.batch_alter_table("conflicts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("remote_deletion_proof", sa.Text(), nullable=True))
    # tombstones made before provenance was recorded: say so rather than leave them unexplained
    op.execute(
        "UPDATE events SET deleted_by = updated_at_source, "
        "deletion_proof = 'recorded before calsync kept deletion proofs' WHERE deleted"
    )


def downgrade() -> None:
    with op.batch_alter_table("conflicts", schema=None) as batch_op:
        batch_op.drop_column("remote_deletion_proof")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("deletion_proof")
        batch_op.drop_column("deleted_by")
