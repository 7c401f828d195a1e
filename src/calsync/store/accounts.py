"""Accounts, local calendars and the bindings between them, with each binding's sync bookkeeping
(full sync generation, sync token, last sync status). Credentials are sealed on the way in and
opened on the way out (store/keys.py); no other column holds them."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any, cast

from sqlalchemy import Connection, RowMapping, case, select

from calsync.model import Account, utcnow
from calsync.statuses import AccountState, ConflictPolicy, Direction, SyncFailure
from calsync.store import service_keys, users
from calsync.store.common import NotFound, new_id
from calsync.store.keys import open_sealed, seal
from calsync.store.rows import AccountRow, BindingRow, CalendarRow
from calsync.store.schema import accounts, bindings, calendars


def create_account(
    conn: Connection,
    provider: str,
    name: str,
    base_url: str | None,
    credentials: dict[str, Any],
    user_id: str | None = None,
) -> str:
    """A new account of `user_id` (None: users.default_owner, for single-user setups and tests)."""
    now = utcnow()
    account_id = new_id()
    conn.execute(
        accounts.insert().values(
            id=account_id,
            user_id=user_id or users.default_owner(conn),
            provider=provider,
            name=name,
            base_url=base_url,
            credentials_sealed=seal(conn, json.dumps(service_keys.extract(conn, credentials))),
            state="ok",
            created_at=now,
            updated_at=now,
        )
    )
    return account_id


def get_account(conn: Connection, account_id: str) -> Account:
    row = conn.execute(select(accounts).where(accounts.c.id == account_id)).mappings().first()
    if row is None:
        raise NotFound(f"no account with id {account_id!r}")
    return _account(conn, row)


def get_accounts(conn: Connection, account_ids: Collection[str]) -> dict[str, Account]:
    """The accounts with these ids (those that exist), in one query: a worker's claim of many
    bindings reads their accounts at once instead of once per sync."""
    if not account_ids:
        return {}
    found = conn.execute(select(accounts).where(accounts.c.id.in_(list(account_ids)))).mappings()
    return {row["id"]: _account(conn, row) for row in found}


def _account(conn: Connection, row: RowMapping) -> Account:
    return Account(
        id=row["id"],
        provider=row["provider"],
        name=row["name"],
        base_url=row["base_url"],
        credentials=service_keys.inline(
            conn, json.loads(open_sealed(conn, row["credentials_sealed"], f"the credentials of account {row['id']}"))
        ),
        state=row["state"],
        last_error=row["last_error"],
    )


def update_credentials(conn: Connection, account_id: str, credentials: dict[str, Any]) -> None:
    """Replace an account's credentials in one statement (a refreshed or rotated token): sealed under
    the current key, so a rotation running meanwhile has nothing to redo for it."""
    done = conn.execute(
        accounts.update()
        .where(accounts.c.id == account_id)
        .values(credentials_sealed=seal(conn, json.dumps(service_keys.extract(conn, credentials))), updated_at=utcnow())
    ).rowcount
    if done != 1:
        raise NotFound(f"no account with id {account_id!r}")


def list_accounts(conn: Connection, user_id: str | None = None) -> list[AccountRow]:
    """Every account, or the user's."""
    query = select(accounts).order_by(accounts.c.created_at)
    if user_id is not None:
        query = query.where(accounts.c.user_id == user_id)
    rows = conn.execute(query).mappings()
    return cast("list[AccountRow]", [{k: v for k, v in row.items() if k != "credentials_sealed"} for row in rows])


def set_account_state(conn: Connection, account_id: str, state: AccountState, error: str | None = None) -> None:
    conn.execute(
        accounts.update().where(accounts.c.id == account_id).values(state=state, last_error=error, updated_at=utcnow())
    )


def create_calendar(
    conn: Connection,
    name: str,
    time_zone: str | None = None,
    color: str | None = None,
    user_id: str | None = None,
) -> str:
    """A new local calendar of `user_id` (None: users.default_owner)."""
    now = utcnow()
    calendar_id = new_id()
    conn.execute(
        calendars.insert().values(
            id=calendar_id,
            user_id=user_id or users.default_owner(conn),
            name=name,
            time_zone=time_zone,
            color=color,
            created_at=now,
            updated_at=now,
        )
    )
    return calendar_id


def list_calendars(conn: Connection, user_id: str | None = None) -> list[CalendarRow]:
    """Every local calendar, or the user's."""
    query = select(calendars).order_by(calendars.c.created_at)
    if user_id is not None:
        query = query.where(calendars.c.user_id == user_id)
    return cast("list[CalendarRow]", [dict(r) for r in conn.execute(query).mappings()])


def calendar_exists(conn: Connection, calendar_id: str, user_id: str | None = None) -> bool:
    """Whether the calendar exists (and, given `user_id`, is that user's)."""
    query = select(calendars.c.id).where(calendars.c.id == calendar_id)
    if user_id is not None:
        query = query.where(calendars.c.user_id == user_id)
    return conn.execute(query).first() is not None


def find_binding(conn: Connection, account_id: str, remote_calendar_id: str) -> BindingRow | None:
    row = (
        conn.execute(
            select(bindings).where(
                bindings.c.account_id == account_id, bindings.c.remote_calendar_id == remote_calendar_id
            )
        )
        .mappings()
        .first()
    )
    return cast("BindingRow", dict(row)) if row else None


def create_binding(
    conn: Connection,
    calendar_id: str,
    account_id: str,
    remote_calendar_id: str,
    direction: Direction,
    conflict_policy: ConflictPolicy = "ask",
) -> str:
    now = utcnow()
    binding_id = new_id()
    conn.execute(
        bindings.insert().values(
            id=binding_id,
            calendar_id=calendar_id,
            account_id=account_id,
            remote_calendar_id=remote_calendar_id,
            direction=direction,
            conflict_policy=conflict_policy,
            full_sync_generation=0,
            next_poll_at=now,  # due at once (the scheduler reads the timer through an index: never NULL)
            created_at=now,
            updated_at=now,
        )
    )
    return binding_id


def get_binding(conn: Connection, binding_id: str) -> BindingRow:
    row = conn.execute(select(bindings).where(bindings.c.id == binding_id)).mappings().first()
    if row is None:
        raise NotFound(f"no binding with id {binding_id!r}")
    return cast("BindingRow", dict(row))


def bound_remote_ids(conn: Connection, account_id: str) -> set[str]:
    """The remote calendars the account has bound (one query, for binding many at once)."""
    query = select(bindings.c.remote_calendar_id).where(bindings.c.account_id == account_id)
    return set(conn.execute(query).scalars())


def binding_and_provider(conn: Connection, binding_id: str) -> tuple[BindingRow, str]:
    """The binding and its account's provider kind, in one query (a sync starts with it; the
    account's credentials are not opened for it)."""
    row = (
        conn.execute(
            select(bindings, accounts.c.provider.label("account_provider"))
            .join(accounts, accounts.c.id == bindings.c.account_id)
            .where(bindings.c.id == binding_id)
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"no binding with id {binding_id!r}")
    found = dict(row)
    provider = found.pop("account_provider")
    return cast("BindingRow", found), str(provider)


def list_bindings(conn: Connection, account_id: str | None = None, user_id: str | None = None) -> list[BindingRow]:
    """Every binding, an account's, or those of a user's calendars."""
    query = select(bindings).order_by(bindings.c.created_at)
    if account_id:
        query = query.where(bindings.c.account_id == account_id)
    if user_id is not None:
        query = query.where(bindings.c.calendar_id.in_(select(calendars.c.id).where(calendars.c.user_id == user_id)))
    return cast("list[BindingRow]", [dict(r) for r in conn.execute(query).mappings()])


def delete_binding(conn: Connection, binding_id: str) -> None:
    conn.execute(bindings.delete().where(bindings.c.id == binding_id))


def start_full_sync(conn: Connection, binding_id: str) -> int:
    """Number a new full sync; links it sees get this number, the rest were deleted remotely."""
    conn.execute(
        bindings.update()
        .where(bindings.c.id == binding_id)
        .values(full_sync_generation=bindings.c.full_sync_generation + 1, updated_at=utcnow())
    )
    return int(conn.execute(select(bindings.c.full_sync_generation).where(bindings.c.id == binding_id)).scalar_one())


def save_sync_token(conn: Connection, binding_id: str, token: str, *, full: bool, stats: dict[str, Any]) -> None:
    """Written in the transaction of the last page only: the checkpoint of a completed listing."""
    now = utcnow()
    values: dict[str, Any] = {
        "sync_token": token,
        "sync_token_updated_at": now,
        # a new token was obtained now; the same one again was only confirmed (one statement, no read)
        "sync_token_obtained_at": case(
            (bindings.c.sync_token.is_distinct_from(token), now), else_=bindings.c.sync_token_obtained_at
        ),
        "last_sync_at": now,
        "last_sync_status": "ok",
        "last_sync_stats": stats,
        "last_error": None,
        "updated_at": now,
    }
    if full:
        values["last_full_sync_at"] = now
    conn.execute(bindings.update().where(bindings.c.id == binding_id).values(**values))


def save_sync_stats(conn: Connection, binding_id: str, stats: dict[str, Any]) -> None:
    """The final counts of a completed sync, after its token was saved (see engine.inbound)."""
    conn.execute(bindings.update().where(bindings.c.id == binding_id).values(last_sync_stats=stats))


def forget_sync_token(conn: Connection, binding_id: str) -> None:
    conn.execute(
        bindings.update()
        .where(bindings.c.id == binding_id)
        .values(sync_token=None, sync_token_obtained_at=None, sync_token_updated_at=None, updated_at=utcnow())
    )


def record_sync_failure(conn: Connection, binding_id: str, status: SyncFailure, error: str) -> None:
    now = utcnow()
    conn.execute(
        bindings.update()
        .where(bindings.c.id == binding_id)
        .values(last_sync_at=now, last_sync_status=status, last_error=error, updated_at=now)
    )
