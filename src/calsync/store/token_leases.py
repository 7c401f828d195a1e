"""Who may refresh an account's access token right now: a short lease on the account row, so two
workers (or two processes on PostgreSQL) never ask the token endpoint for the same account at once,
and a worker that dies while refreshing holds nobody up for longer than the lease."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, or_

from calsync.store.schema import accounts


def take(conn: Connection, account_id: str, owner: str, now: datetime, seconds: float) -> bool:
    """The lease for `owner` when nobody holds it (or the holder's ran out); False when another has it."""
    taken = conn.execute(
        accounts.update()
        .where(
            accounts.c.id == account_id,
            or_(accounts.c.token_lease_until.is_(None), accounts.c.token_lease_until < now),
        )
        .values(token_lease_owner=owner, token_lease_until=now + timedelta(seconds=seconds))
    ).rowcount
    return taken == 1


def release(conn: Connection, account_id: str, owner: str) -> None:
    conn.execute(
        accounts.update()
        .where(accounts.c.id == account_id, accounts.c.token_lease_owner == owner)
        .values(token_lease_owner=None, token_lease_until=None)
    )


def held_by(conn: Connection, account_id: str, owner: str) -> bool:
    """Whether `owner` still holds the lease (it may have run out and been taken by another)."""
    row = conn.execute(
        accounts.select().with_only_columns(accounts.c.token_lease_owner).where(accounts.c.id == account_id)
    ).first()
    return row is not None and row.token_lease_owner == owner
