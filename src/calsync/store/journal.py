"""The change journal: every committed change of an event, written in the same transaction as the
change itself, read back as the user's change feed (in commit order) and as the event's history.

Feed order. Row ids are given when a row is inserted, not when its transaction commits, so on
PostgreSQL a reader following ids could pass a row whose transaction commits later and never see it.
Rows therefore get their feed `position` only after they are committed: `sequence` numbers the
committed rows it finds, in id order, under the journal_state row's lock, and commits the numbers
with the newest one given (`sequenced_through`). A reader reads positions up to that newest one, so
nothing below its cursor can appear later. Two changes of one event are ordered by the event row's
lock (the second writer waits for the first to commit before it writes its journal row), so their
ids, and then their positions, follow the event's versions.

History. A row's `diff` holds, for each field that changed, its old and new value: storage follows
what changed, and any kept version is rebuilt by undoing the later diffs from the event's current
row (`content_at`), so pruning old rows (retention) never needs a snapshot to be rewritten."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import reduce
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, Text, bindparam, case, delete, func, literal, or_, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import JSONB

from calsync.model import LOCAL_SOURCE, utcnow
from calsync.statuses import ChangeKind
from calsync.store.common import chunks, insert_many, json_text
from calsync.store.schema import accounts, bindings, calendars, event_changes, events, journal_state

# The fields a person sees change (history, the feed's `fields`); provider bookkeeping (extra, the
# iCalendar UID and SEQUENCE, the hash) is not history.
HISTORY_FIELDS = (
    "title",
    "description",
    "location",
    "start",
    "end",
    "all_day",
    "time_zone",
    "status",
    "recurrence",
    "original_start",
    "attendees",
    "conference",
)
SEQUENCE_BATCH = 5000


@dataclass(frozen=True)
class Author:
    """Who made a change: `side` is "local" or the binding that brought it; `name` says who, as
    history shows it ("api key deploy-bot", "cli", "google binding 7f3a...")."""

    side: str
    name: str


LIBRARY = Author(LOCAL_SOURCE, "calsync")
MERGE_PREFIX = "merge:"  # the source of a merged version: "merge:<provider>:<binding id>" (engine/page_plan.py)
ENGINE = "calsync"


def author_of_source(source: str) -> Author:
    """The author of a change the engine applied from an event `source` ("local",
    "<provider>:<binding id>", or "merge:<provider>:<binding id>" for a merge with that binding's)."""
    if source == LOCAL_SOURCE or ":" not in source:
        return LIBRARY
    merged = source.startswith(MERGE_PREFIX)
    provider, binding_id = source.removeprefix(MERGE_PREFIX).split(":", 1)
    if merged:  # a field-by-field merge of this binding's change with ours (policy merge)
        return Author(binding_id, f"merge of local and {provider} binding {binding_id}")
    return Author(binding_id, f"{provider} binding {binding_id}")


def author_of_binding(conn: Connection, binding_id: str) -> Author:
    provider = conn.execute(
        select(accounts.c.provider)
        .join(bindings, bindings.c.account_id == accounts.c.id)
        .where(bindings.c.id == binding_id)
    ).scalar()
    return Author(binding_id, f"{provider or 'unknown'} binding {binding_id}")


@dataclass(frozen=True)
class Change:
    event_id: str
    calendar_id: str
    version: int
    kind: ChangeKind
    fields: list[str] | None = None
    diff: dict[str, list[Any]] | None = None
    remote_etag: str | None = None
    conflict_id: str | None = None


# --- writing -------------------------------------------------------------------------------------


def before(conn: Connection, event_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The events as they are before a change: calendar, version, deleted, and the history fields.
    One indexed query per 500 events."""
    found: dict[str, dict[str, Any]] = {}
    columns = [events.c.id, events.c.calendar_id, events.c.version, events.c.deleted]
    columns += [events.c[name] for name in HISTORY_FIELDS]
    for chunk in chunks(list(dict.fromkeys(event_ids))):
        for row in conn.execute(select(*columns).where(events.c.id.in_(chunk))).mappings():
            found[row["id"]] = dict(row)
    return found


def diff_of(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, list[Any]]:
    """{field: [old, new]} for each history field whose value differs (new values as stored)."""
    return {name: [old.get(name), new[name]] for name in HISTORY_FIELDS if name in new and old.get(name) != new[name]}


def update_kind(old_deleted: bool, new_deleted: bool, fields: Sequence[str]) -> ChangeKind:
    if new_deleted and not old_deleted:
        return "deleted"
    if old_deleted and not new_deleted:
        return "undeleted"
    if list(fields) == ["conference"]:
        return "conference-changed"
    return "updated"


def changes_of_update(
    old_rows: Mapping[str, Mapping[str, Any]],
    new_rows: Iterable[tuple[str, int, Mapping[str, Any], bool]],
    etags: Mapping[str, str | None] | None = None,
) -> list[Change]:
    """Changes for events written with new content: (event id, new version, new columns, deleted)."""
    changes: list[Change] = []
    for event_id, version, columns, deleted in new_rows:
        old = old_rows.get(event_id)
        if old is None:
            continue
        diff = diff_of(old, columns)
        kind = update_kind(bool(old["deleted"]), deleted, list(diff))
        changes.append(
            Change(
                event_id,
                old["calendar_id"],
                version,
                kind,
                fields=list(diff),
                diff=diff or None,
                remote_etag=(etags or {}).get(event_id),
            )
        )
    return changes


_EMPTY: tuple[Any, ...] = (None, "", [], {}, False)  # a created row's field with one of these values did not "change"


def _set_fields(row: Mapping[str, Any]) -> list[str]:
    """The history fields a new row sets (a truthy value is never one of _EMPTY: asked first, it
    spares the five comparisons for most fields)."""
    return [name for name in HISTORY_FIELDS if (value := row.get(name)) or value not in _EMPTY]


def created(row: Mapping[str, Any], remote_etag: str | None = None) -> Change:
    """The change that made a new event row (its content is rebuilt from later rows, not kept here)."""
    fields = _set_fields(row)
    return Change(row["id"], row["calendar_id"], int(row["version"]), "created", fields=fields, remote_etag=remote_etag)


def record_created(
    conn: Connection, rows: Sequence[Mapping[str, Any]], author: Author, etags: Mapping[str, str | None]
) -> None:
    """The journal rows of new event rows (inserted already) made by one author: what record() writes
    for each row's created() change, in the rows' order. The database builds them from the event rows
    in one INSERT ... SELECT, given the ids and ETags as one JSON parameter: an initial sync writes one
    per event, and building, converting and sending each from here was a tenth of its client CPU."""
    if not rows:
        return
    pairs = json_text([[row["id"], etags.get(row["id"])] for row in rows])
    statement = _created_rows.get(conn.dialect.name)
    if statement is None:
        statement = _created_rows.setdefault(conn.dialect.name, _created_rows_statement(conn))
    conn.execute(statement, {"pairs": pairs, "side": author.side, "author": author.name, "now": utcnow()})


# the INSERT ... SELECT of record_created, by dialect: made once (its fourteen CASEs and joins took
# a millisecond to build and key for the cache, which a small calendar's first sync paid in full)
_created_rows: dict[str, Any] = {}


def _created_rows_statement(conn: Connection) -> Any:
    position, event_id, etag, listed = _listed_pairs(conn)
    query = (
        select(
            calendars.c.user_id,
            events.c.calendar_id,
            events.c.id,
            events.c.version,
            literal("created"),
            bindparam("side", type_=Text),
            bindparam("author", type_=Text),
            etag,
            _set_fields_sql(conn),
            bindparam("now", type_=event_changes.c.created_at.type),
        )
        .select_from(
            listed.join(events, events.c.id == event_id).join(calendars, calendars.c.id == events.c.calendar_id)
        )
        .order_by(position)
    )
    columns = ["user_id", "calendar_id", "event_id", "version", "kind", "side", "author", "remote_etag", "fields"]
    return event_changes.insert().from_select([*columns, "created_at"], query)


def _listed_pairs(conn: Connection) -> tuple[Any, Any, Any, Any]:
    """(position, event id, ETag) of each [id, etag] pair of the JSON array given as `pairs`, as a
    table to select from."""
    pairs = bindparam("pairs", type_=Text)
    if conn.dialect.name == "postgresql":
        listed = (
            func.jsonb_array_elements(sql_cast(pairs, JSONB))
            .table_valued("value", with_ordinality="position")
            .render_derived()
        )
        value = listed.c.value
        return listed.c.position, value.op("->>")(0), value.op("->>")(1), listed
    listed = func.json_each(pairs).table_valued("key", "value")
    return listed.c.key, func.json_extract(listed.c.value, "$[0]"), func.json_extract(listed.c.value, "$[1]"), listed


def _set_fields_sql(conn: Connection) -> Any:
    """_set_fields as SQL over the stored event row: the JSON text of the names of the history fields
    whose value is not empty (None, "", false, 0, [] or {}), in HISTORY_FIELDS' order, spelled as
    json.dumps spells a list (SQLite keeps the text as it is; PostgreSQL reads it as JSONB)."""
    names: list[Any] = []
    for name in HISTORY_FIELDS:
        column = events.c[name]
        empty: ColumnElement[bool]
        if name == "all_day":
            empty = column.is_(False)
        elif name in ("recurrence", "attendees", "conference"):
            empty = or_(column.is_(None), sql_cast(column, Text).in_(["null", '""', "false", "0", "[]", "{}"]))
        else:
            empty = func.coalesce(column, "") == ""
        names.append(case((empty, ""), else_=f'"{name}", '))
    listed = func.rtrim(reduce(operator.add, names), ", ")
    text = literal("[", Text) + listed + literal("]", Text)
    return sql_cast(text, JSONB) if conn.dialect.name == "postgresql" else text


def record(conn: Connection, changes: Sequence[Change], author: Author) -> None:
    """Write the journal rows of changes made by one author, in this transaction."""
    if not changes:
        return
    owners = _owners(conn, {c.calendar_id for c in changes})
    now = utcnow()
    insert_many(
        conn,
        event_changes,
        [
            {
                "user_id": owners.get(c.calendar_id, ""),
                "calendar_id": c.calendar_id,
                "event_id": c.event_id,
                "version": c.version,
                "kind": c.kind,
                "side": author.side,
                "author": author.name,
                "remote_etag": c.remote_etag,
                "fields": c.fields,
                "diff": c.diff,
                "conflict_id": c.conflict_id,
                "created_at": now,
            }
            for c in changes
        ],
    )


def record_conflict(
    conn: Connection, event_id: str, conflict_id: str, change: ChangeKind, author: Author, **info: Any
) -> None:
    """A conflict opened or resolved: at the event's current version. `info` goes into `fields`
    (the clashing fields, the resolution)."""
    row = conn.execute(select(events.c.calendar_id, events.c.version).where(events.c.id == event_id)).first()
    if row is None:
        return
    fields = [f"{key}:{value}" for key, value in info.items() if value] or None
    record(
        conn,
        [Change(event_id, row.calendar_id, int(row.version), change, fields=fields, conflict_id=conflict_id)],
        author,
    )


def _owners(conn: Connection, calendar_ids: set[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for chunk in chunks(sorted(calendar_ids)):
        query = select(calendars.c.id, calendars.c.user_id).where(calendars.c.id.in_(chunk))
        found.update((str(calendar_id), str(user_id)) for calendar_id, user_id in conn.execute(query))
    return found


# --- the feed ------------------------------------------------------------------------------------


def sequence(conn: Connection, batch: int = SEQUENCE_BATCH) -> int:
    """Give committed rows without a position the next positions, in id order; returns how many.
    Run in a transaction of its own: the journal_state row's lock (taken first) keeps sequencers one
    at a time, and what they give is visible at once, with `sequenced_through`, when it commits."""
    conn.execute(
        update(journal_state).where(journal_state.c.id == 1).values(sequenced_through=journal_state.c.sequenced_through)
    )
    ids = list(
        conn.execute(
            select(event_changes.c.id)
            .where(event_changes.c.position.is_(None))
            .order_by(event_changes.c.id)
            .limit(batch)
        ).scalars()
    )
    if not ids:
        return 0
    top = int(conn.execute(select(journal_state.c.sequenced_through).where(journal_state.c.id == 1)).scalar_one())
    conn.execute(
        update(event_changes).where(event_changes.c.id == bindparam("change_id")).values(position=bindparam("pos")),
        [{"change_id": change_id, "pos": top + n} for n, change_id in enumerate(ids, 1)],
    )
    conn.execute(update(journal_state).where(journal_state.c.id == 1).values(sequenced_through=top + len(ids)))
    return len(ids)


class CursorExpired(Exception):
    """The reader's position is older than what retention keeps: some changes after it are gone."""

    def __init__(self, after: int, pruned_through: int) -> None:
        super().__init__(f"changes up to position {pruned_through} were pruned; this cursor is at {after}")
        self.after = after
        self.pruned_through = pruned_through


@dataclass(frozen=True)
class FeedPage:
    items: list[dict[str, Any]]
    next_position: int  # where the reader goes on from (the last item's, or the newest sequenced)
    more: bool  # a full page: more may follow at once


def read_feed(conn: Connection, user_id: str, after: int | None, limit: int, *, diffs: bool = True) -> FeedPage:
    """The user's changes after position `after` (None: from the oldest kept), oldest first. Reads
    only sequenced rows: call `sequence` (in its own transaction) first to include the newest.
    `diffs=False` leaves the `diff` column unread (the API's feed shows field names only)."""
    state = conn.execute(select(journal_state.c.sequenced_through, journal_state.c.pruned_through)).one()
    head, pruned = int(state.sequenced_through), int(state.pruned_through)
    if after is not None and after < pruned:
        raise CursorExpired(after, pruned)
    start = after if after is not None else pruned
    rows = [
        dict(row)
        for row in conn.execute(
            select(*(c for c in event_changes.c if diffs or c.name != "diff"))
            .where(
                event_changes.c.user_id == user_id,
                event_changes.c.position > start,
                event_changes.c.position <= head,
            )
            .order_by(event_changes.c.position)
            .limit(limit)
        ).mappings()
    ]
    if after is not None:
        # a prune that committed after the check above may have taken rows this read then missed
        # (PostgreSQL's statements each see the newest commits): refused, never skipped in silence
        pruned = int(conn.execute(select(journal_state.c.pruned_through)).scalar_one())
        if after < pruned:
            raise CursorExpired(after, pruned)
    full = len(rows) == limit
    next_position = int(rows[-1]["position"]) if full else max(start, head)
    return FeedPage(rows, next_position, full)


def head(conn: Connection) -> int:
    """The newest sequenced position: a reader starting here sees every change committed after it."""
    return int(conn.execute(select(journal_state.c.sequenced_through)).scalar_one())


def pending(conn: Connection) -> bool:
    """Whether some committed row waits for a position (a cheap look through the partial index).
    Waiters watch this and `head`, not `newest_id`: on PostgreSQL a row can commit after a row with a
    higher id, and the newest id does not move when it does."""
    # ORDER BY id is what the partial index holds: without it PostgreSQL, on statistics from before
    # the rows were sequenced, scanned the whole table for a row it did not find
    query = select(event_changes.c.id).where(event_changes.c.position.is_(None)).order_by(event_changes.c.id).limit(1)
    return conn.execute(query).first() is not None


def readers_after(conn: Connection, after: int, through: int) -> dict[str, int]:
    """The users with changes at positions in (after, through], each with its newest position there:
    whose waiting readers have something new."""
    query = (
        select(event_changes.c.user_id, func.max(event_changes.c.position))
        .where(event_changes.c.position > after, event_changes.c.position <= through)
        .group_by(event_changes.c.user_id)
    )
    return {str(user_id): int(newest) for user_id, newest in conn.execute(query)}


def newest_id(conn: Connection) -> int:
    """The newest journal row id (sequenced or not): cheap, for waiters watching for new rows."""
    return int(conn.execute(select(func.max(event_changes.c.id))).scalar() or 0)


def prune(conn: Connection, older_than: datetime, batch: int = 5000) -> int:
    """Retention: delete sequenced rows made before `older_than` (history and feed alike) and
    record the newest position pruned, so a cursor before it is refused (CursorExpired)."""
    removed = 0
    while True:
        rows = conn.execute(
            select(event_changes.c.id, event_changes.c.position)
            .where(event_changes.c.created_at < older_than, event_changes.c.position.is_not(None))
            .order_by(event_changes.c.id)
            .limit(batch)
        ).all()
        if not rows:
            return removed
        newest = max(int(r.position) for r in rows)
        conn.execute(delete(event_changes).where(event_changes.c.id.in_([r.id for r in rows])))
        conn.execute(
            update(journal_state)
            .where(journal_state.c.id == 1, journal_state.c.pruned_through < newest)
            .values(pruned_through=newest)
        )
        removed += len(rows)


# --- history -------------------------------------------------------------------------------------


def history(conn: Connection, event_id: str) -> list[dict[str, Any]]:
    """Every kept change of one event, oldest first (sequenced or not: history is not the feed)."""
    return [
        dict(row)
        for row in conn.execute(
            select(event_changes).where(event_changes.c.event_id == event_id).order_by(event_changes.c.id)
        ).mappings()
    ]


def content_at(conn: Connection, event_id: str, version: int) -> dict[str, Any] | None:
    """The history fields of the event as they were at `version`, rebuilt from its current row by
    undoing the diffs of later changes; None when that version is not in the kept history."""
    current = before(conn, [event_id]).get(event_id)
    if current is None:
        return None
    entries = history(conn, event_id)
    if not any(e["version"] == version and e["kind"] not in ("conflict-opened", "conflict-resolved") for e in entries):
        return None
    content = {name: current[name] for name in HISTORY_FIELDS}
    for entry in reversed(entries):
        if entry["version"] <= version:
            break
        for name, (old, _new) in cast("dict[str, list[Any]]", entry["diff"] or {}).items():
            content[name] = old
    return content
