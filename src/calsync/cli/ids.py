"""Ids given on the command line as unique prefixes, as git takes commit ids: `calsync calendar
unbind 3f9a` is the binding whose id starts with 3f9a, when only one does.

One helper for every kind of object, so every command that takes an id reads it the same way: an id
that exists as given is taken as is; else the prefix must match exactly one id of that kind; an
ambiguous prefix is an error that lists (some of) the matches, and no match is an error too."""

from __future__ import annotations

from typing import Literal

from sqlalchemy import Connection, Table, select

from calsync.cli.output import fail
from calsync.store import schema

IdKind = Literal["event", "binding", "account", "calendar", "conflict", "user", "apikey"]

_TABLES: dict[IdKind, Table] = {
    "event": schema.events,
    "binding": schema.bindings,
    "account": schema.accounts,
    "calendar": schema.calendars,
    "conflict": schema.conflicts,
    "user": schema.users,
    "apikey": schema.api_keys,
}
_NAMES: dict[IdKind, str] = {"calendar": "local calendar", "apikey": "API key"}
SHOWN = 10  # matches listed in the error for an ambiguous prefix


def matching_ids(conn: Connection, kind: IdKind, given: str) -> list[str]:
    """`[given]` when it is a whole id of `kind`; else the ids that start with it, at most SHOWN + 1
    (LIKE 'prefix%' on the id column, which its index serves)."""
    column = _TABLES[kind].c.id
    if conn.execute(select(column).where(column == given)).first() is not None:
        return [given]
    if not given or any(c in given for c in "%_\\"):
        return []
    query = select(column).where(column.like(f"{given}%")).order_by(column).limit(SHOWN + 1)
    return [str(found) for found in conn.execute(query).scalars()]


def resolve_id(conn: Connection, kind: IdKind, given: str) -> str:
    """The whole id of the `kind` object `given` is the id or a unique prefix of; else a clear error
    (exit 1): no match, or an ambiguous prefix with the ids it matches."""
    matches = matching_ids(conn, kind, given)
    name = _NAMES.get(kind, kind)
    if not matches:
        raise fail(f"no {name} with id {given!r}")
    if len(matches) > 1:
        listed = ", ".join(matches[:SHOWN]) + (", ..." if len(matches) > SHOWN else "")
        raise fail(f"{given!r} is ambiguous: more than one {name} id starts with it ({listed}); give more of the id")
    return matches[0]


def resolve_ids(conn: Connection, kind: IdKind, given: list[str]) -> list[str]:
    return [resolve_id(conn, kind, one) for one in given]
