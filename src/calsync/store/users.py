"""Users and their API keys, and who owns a row the service was asked about.

Every account and local calendar has a `user_id`; events, conflicts and conferences belong to their
calendar's user, found through `calendar_id` (ownership queries below), so no second copy of the
owner can disagree with the first.

API keys look like `cs_<key id>_<secret>`, the secret `secrets.token_urlsafe(32)` (256 random bits).
Only the secret's SHA-256 is stored: a slow password hash (Argon2, bcrypt) protects secrets people
choose, which are guessable; a 256-bit random secret cannot be guessed whatever the hash, so one fast
hash is enough, and it keeps checking a key on every request cheap. Hashes are compared with
hmac.compare_digest, in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Connection, select, update

from calsync.model import utcnow
from calsync.statuses import KeyScope
from calsync.store.common import NotFound, new_id
from calsync.store.rows import ApiKeyRow, UserRow
from calsync.store.schema import accounts, api_keys, bindings, calendars, conflicts, events, users

KEY_PREFIX = "cs_"
SHOWN_CHARACTERS = 12  # of the key, in lists: `cs_` and the start of its id
TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per key (not on every request)


# a user's row as the rest of calsync sees it: never the password hash (store/sessions.py keeps to that)
_USER_COLUMNS = [c for c in users.c if c.name != "password_hash"]


class NameTaken(ValueError):
    """A user name already in use."""


@dataclass(frozen=True)
class KeyOwner:
    """What a valid key stands for."""

    key_id: str
    user_id: str
    scope: KeyScope


# --- users ---------------------------------------------------------------------------------------


def create_user(conn: Connection, name: str, *, is_admin: bool = False) -> str:
    """A new user; NameTaken when the name is in use (names are unique, and what people type)."""
    if conn.execute(select(users.c.id).where(users.c.name == name)).first() is not None:
        raise NameTaken(f"a user named {name!r} exists already")
    user_id = new_id()
    conn.execute(users.insert().values(id=user_id, name=name, is_admin=is_admin, created_at=utcnow()))
    return user_id


def list_users(conn: Connection) -> list[UserRow]:
    query = select(*_USER_COLUMNS).order_by(users.c.created_at, users.c.id)
    return cast("list[UserRow]", [dict(r) for r in conn.execute(query).mappings()])


def find_user(conn: Connection, name_or_id: str) -> UserRow:
    """A user by id, else by name (an id is 32 hex digits, which a name may be too: the id wins)."""
    for column in (users.c.id, users.c.name):
        row = conn.execute(select(*_USER_COLUMNS).where(column == name_or_id)).mappings().first()
        if row is not None:
            return cast("UserRow", dict(row))
    raise NotFound(f"no user {name_or_id!r}")


DEFAULT_USER = "default"


def default_owner(conn: Connection) -> str:
    """Whom rows made without a named user belong to: the only user, else the first admin.

    A database without users gets one here: "default", an admin (as migration 0012 makes for the
    rows of a database from before users), so a single-person setup never has to make one."""
    rows = list_users(conn)
    if not rows:
        return create_user(conn, DEFAULT_USER, is_admin=True)
    if len(rows) == 1:
        return rows[0]["id"]
    for row in rows:
        if row["is_admin"]:
            return row["id"]
    raise NotFound("no user to act as: name one (calsync user list)")


# --- API keys ------------------------------------------------------------------------------------


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(conn: Connection, user_id: str, scope: KeyScope, name: str = "") -> tuple[str, str]:
    """A new key for the user: (its id, the key itself). The key is not stored and cannot be shown again."""
    if conn.execute(select(users.c.id).where(users.c.id == user_id)).first() is None:
        raise NotFound(f"no user {user_id!r}")
    key_id = new_id()
    secret = secrets.token_urlsafe(32)
    key = f"{KEY_PREFIX}{key_id}_{secret}"
    conn.execute(
        api_keys.insert().values(
            id=key_id,
            user_id=user_id,
            name=name,
            scope=scope,
            prefix=key[:SHOWN_CHARACTERS],
            secret_hash=_digest(secret),
            created_at=utcnow(),
        )
    )
    return key_id, key


def list_api_keys(conn: Connection, user_id: str | None = None) -> list[ApiKeyRow]:
    columns = [c for c in api_keys.c if c.name != "secret_hash"]
    query = select(*columns).order_by(api_keys.c.created_at, api_keys.c.id)
    if user_id is not None:
        query = query.where(api_keys.c.user_id == user_id)
    return cast("list[ApiKeyRow]", [dict(r) for r in conn.execute(query).mappings()])


def key_label(conn: Connection, key_id: str) -> tuple[str, str] | None:
    """(name, owner's user id) of a key, revoked or not; None for no such key. An unnamed key is
    named by its shown characters (its prefix), as lists show it."""
    row = conn.execute(
        select(api_keys.c.name, api_keys.c.prefix, api_keys.c.user_id).where(api_keys.c.id == key_id)
    ).first()
    return None if row is None else (row.name or row.prefix, row.user_id)


def revoke_api_key(conn: Connection, key_id: str) -> bool:
    """Revoke a key (kept, for the record); False when it was revoked already. NotFound for no such key."""
    if conn.execute(select(api_keys.c.id).where(api_keys.c.id == key_id)).first() is None:
        raise NotFound(f"no API key with id {key_id!r}")
    done = conn.execute(
        update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)).values(revoked_at=utcnow())
    ).rowcount
    return done == 1


def check_api_key(conn: Connection, key: str, now: datetime | None = None) -> KeyOwner | None:
    """The owner of a valid, unrevoked key; None for anything else (malformed, unknown, revoked,
    wrong secret), all alike, so an answer tells a caller nothing about which part was wrong."""
    if not key.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = key[len(KEY_PREFIX) :].partition("_")
    if not sep or len(key_id) != 32 or not secret:
        return None
    row = conn.execute(
        select(api_keys.c.user_id, api_keys.c.scope, api_keys.c.secret_hash, api_keys.c.last_used_at).where(
            api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)
        )
    ).first()
    if row is None or not hmac.compare_digest(row.secret_hash, _digest(secret)):
        return None
    now = now or utcnow()
    if row.last_used_at is None or now - row.last_used_at >= TOUCH_EVERY:
        conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=now))
    return KeyOwner(key_id, row.user_id, cast("KeyScope", row.scope))


# --- owners --------------------------------------------------------------------------------------


def account_owner(conn: Connection, account_id: str) -> str | None:
    return conn.execute(select(accounts.c.user_id).where(accounts.c.id == account_id)).scalar()


def calendar_owner(conn: Connection, calendar_id: str) -> str | None:
    return conn.execute(select(calendars.c.user_id).where(calendars.c.id == calendar_id)).scalar()


def event_owner(conn: Connection, event_id: str) -> str | None:
    query = select(calendars.c.user_id).join(events, events.c.calendar_id == calendars.c.id)
    return conn.execute(query.where(events.c.id == event_id)).scalar()


def conflict_owner(conn: Connection, conflict_id: str) -> str | None:
    query = (
        select(calendars.c.user_id)
        .join(events, events.c.calendar_id == calendars.c.id)
        .join(conflicts, conflicts.c.event_id == events.c.id)
    )
    return conn.execute(query.where(conflicts.c.id == conflict_id)).scalar()


def binding_owner(conn: Connection, binding_id: str) -> str | None:
    query = select(calendars.c.user_id).join(bindings, bindings.c.calendar_id == calendars.c.id)
    return conn.execute(query.where(bindings.c.id == binding_id)).scalar()
