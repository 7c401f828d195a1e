"""The queries the engine and the CLI need, one function per intent. All SQL lives here."""
from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, and_, bindparam, func, or_, select, update

from calsync.model import Account, EventData, canonical_time, range_key, utcnow
from calsync.store.schema import (
    UTCDateTime,
    accounts,
    bindings,
    calendars,
    conflicts,
    event_links,
    events,
)

_LOCAL_ID = re.compile(r"[0-9a-f]{32}")


class NotFound(LookupError):
    """A row the caller named does not exist."""


class _RandomIds:
    """128-bit random ids taken from the OS a block at a time: one getrandom() per 256 ids, not one
    per id. Each call releases the GIL, so a page of 500 new events paid 500 thread switches while
    the listing thread was parsing (a tenth of an initial sync's time on two cores)."""

    BLOCK = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._block = ""
        self._next = 0
        os.register_at_fork(after_in_child=self._forget)  # a child must never repeat its parent's ids

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._block, self._next = "", 0

    def take(self) -> str:
        with self._lock:
            if self._next >= len(self._block):
                self._block, self._next = os.urandom(16 * self.BLOCK).hex(), 0
            start = self._next
            self._next += 32
            return self._block[start:start + 32]


_ids = _RandomIds()


def new_id() -> str:
    """Stable ids: 32 lowercase hex characters (also valid Google base32hex event ids)."""
    return _ids.take()


# --- accounts -----------------------------------------------------------------------------


def create_account(
    conn: Connection, provider: str, name: str, base_url: str | None, credentials: dict[str, Any]
) -> str:
    now = utcnow()
    account_id = new_id()
    conn.execute(
        accounts.insert().values(
            id=account_id, provider=provider, name=name, base_url=base_url,
            credentials=credentials, state="ok", created_at=now, updated_at=now,
        )
    )
    return account_id


def get_account(conn: Connection, account_id: str) -> Account:
    row = conn.execute(select(accounts).where(accounts.c.id == account_id)).mappings().first()
    if row is None:
        raise NotFound(f"no account with id {account_id!r}")
    return Account(
        id=row["id"], provider=row["provider"], name=row["name"], base_url=row["base_url"],
        credentials=dict(row["credentials"]), state=row["state"],
    )


def list_accounts(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(select(accounts).order_by(accounts.c.created_at)).mappings()
    return [{k: v for k, v in row.items() if k != "credentials"} for row in rows]


def set_account_state(conn: Connection, account_id: str, state: str, error: str | None = None) -> None:
    conn.execute(
        accounts.update().where(accounts.c.id == account_id)
        .values(state=state, last_error=error, updated_at=utcnow())
    )


# --- calendars and bindings ----------------------------------------------------------------


def create_calendar(conn: Connection, name: str, time_zone: str | None = None, color: str | None = None) -> str:
    now = utcnow()
    calendar_id = new_id()
    conn.execute(
        calendars.insert().values(
            id=calendar_id, name=name, time_zone=time_zone, color=color, created_at=now, updated_at=now
        )
    )
    return calendar_id


def list_calendars(conn: Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(select(calendars).order_by(calendars.c.created_at)).mappings()]


def calendar_exists(conn: Connection, calendar_id: str) -> bool:
    return conn.execute(select(calendars.c.id).where(calendars.c.id == calendar_id)).first() is not None


def find_binding(conn: Connection, account_id: str, remote_calendar_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        select(bindings).where(
            bindings.c.account_id == account_id, bindings.c.remote_calendar_id == remote_calendar_id
        )
    ).mappings().first()
    return dict(row) if row else None


def create_binding(
    conn: Connection, calendar_id: str, account_id: str, remote_calendar_id: str,
    direction: str, conflict_policy: str = "ask",
) -> str:
    now = utcnow()
    binding_id = new_id()
    conn.execute(
        bindings.insert().values(
            id=binding_id, calendar_id=calendar_id, account_id=account_id,
            remote_calendar_id=remote_calendar_id, direction=direction, conflict_policy=conflict_policy,
            full_sync_generation=0, created_at=now, updated_at=now,
        )
    )
    return binding_id


def get_binding(conn: Connection, binding_id: str) -> dict[str, Any]:
    row = conn.execute(select(bindings).where(bindings.c.id == binding_id)).mappings().first()
    if row is None:
        raise NotFound(f"no binding with id {binding_id!r}")
    return dict(row)


def list_bindings(conn: Connection, account_id: str | None = None) -> list[dict[str, Any]]:
    query = select(bindings).order_by(bindings.c.created_at)
    if account_id:
        query = query.where(bindings.c.account_id == account_id)
    return [dict(r) for r in conn.execute(query).mappings()]


def delete_binding(conn: Connection, binding_id: str) -> None:
    conn.execute(bindings.delete().where(bindings.c.id == binding_id))


def start_full_sync(conn: Connection, binding_id: str) -> int:
    """Number a new full sync; links it sees get this number, the rest were deleted remotely."""
    conn.execute(
        bindings.update().where(bindings.c.id == binding_id)
        .values(full_sync_generation=bindings.c.full_sync_generation + 1, updated_at=utcnow())
    )
    return int(conn.execute(
        select(bindings.c.full_sync_generation).where(bindings.c.id == binding_id)
    ).scalar_one())


def save_sync_token(conn: Connection, binding_id: str, token: str, *, full: bool, stats: dict[str, Any]) -> None:
    """Written in the transaction of the last page only: the checkpoint of a completed listing."""
    now = utcnow()
    current = get_binding(conn, binding_id)
    values: dict[str, Any] = {
        "sync_token": token, "sync_token_updated_at": now, "last_sync_at": now,
        "last_sync_status": "ok", "last_sync_stats": stats, "last_error": None, "updated_at": now,
    }
    if token != current["sync_token"]:
        values["sync_token_obtained_at"] = now
    if full:
        values["last_full_sync_at"] = now
    conn.execute(bindings.update().where(bindings.c.id == binding_id).values(**values))


def forget_sync_token(conn: Connection, binding_id: str) -> None:
    conn.execute(
        bindings.update().where(bindings.c.id == binding_id)
        .values(sync_token=None, sync_token_obtained_at=None, sync_token_updated_at=None, updated_at=utcnow())
    )


def record_sync_failure(conn: Connection, binding_id: str, status: str, error: str) -> None:
    now = utcnow()
    conn.execute(
        bindings.update().where(bindings.c.id == binding_id)
        .values(last_sync_at=now, last_sync_status=status, last_error=error, updated_at=now)
    )


# --- events and links -------------------------------------------------------------------


@dataclass
class LinkedEvent:
    """A link of one binding together with the local event it points at."""

    link_id: int
    event_id: str
    remote_id: str
    etag: str | None
    base_version: int
    base_hash: str
    base_snapshot: dict[str, Any]
    remote_deleted: bool
    remote_updated: str | None
    series_remote_id: str | None
    version: int
    deleted: bool
    content_hash: str
    updated_at: datetime
    recurring_event_id: str | None
    data: EventData


def event_columns(data: EventData, content_hash: str | None = None) -> dict[str, Any]:
    """The event table's content columns for one EventData (times in canonical form)."""
    start = canonical_time(data.start, data.all_day)
    end = canonical_time(data.end, data.all_day)
    return {
        "title": data.title, "description": data.description, "location": data.location,
        "start": start, "end": end, "range_start": range_key(start), "range_end": range_key(end),
        "all_day": data.all_day, "time_zone": data.time_zone, "status": data.status,
        "recurrence": data.recurrence,
        "original_start": data.original_start, "attendees": [a.__dict__ for a in data.attendees],
        "conference": data.conference, "ical_uid": data.ical_uid, "sequence": data.sequence,
        "extra": data.extra, "content_hash": content_hash or data.content_hash(),
    }


def row_to_data(row: Any) -> EventData:
    return EventData.from_json({
        "title": row["title"], "start": row["start"], "end": row["end"], "all_day": row["all_day"],
        "time_zone": row["time_zone"], "description": row["description"], "location": row["location"],
        "status": row["status"], "recurrence": row["recurrence"], "original_start": row["original_start"],
        "attendees": row["attendees"], "conference": row["conference"], "ical_uid": row["ical_uid"],
        "sequence": row["sequence"], "extra": row["extra"],
    })


_LINKED_COLUMNS: list[Any] = [
    event_links.c.id.label("link_id"), event_links.c.remote_id, event_links.c.etag,
    event_links.c.base_version, event_links.c.base_hash, event_links.c.base_snapshot,
    event_links.c.remote_deleted, event_links.c.remote_updated, event_links.c.series_remote_id, events,
]


def _linked(row: Any) -> LinkedEvent:
    data = row_to_data(row)
    return LinkedEvent(
        link_id=row["link_id"], event_id=row["id"], remote_id=row["remote_id"], etag=row["etag"],
        base_version=row["base_version"], base_hash=row["base_hash"],
        base_snapshot=row["base_snapshot"] if row["base_snapshot"] is not None else data.snapshot(),
        remote_deleted=row["remote_deleted"], remote_updated=row["remote_updated"],
        series_remote_id=row["series_remote_id"], version=row["version"], deleted=row["deleted"],
        content_hash=row["content_hash"], updated_at=row["updated_at"],
        recurring_event_id=row["recurring_event_id"], data=data,
    )


def chunks(items: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def links_by_remote_id(conn: Connection, binding_id: str, remote_ids: Sequence[str]) -> dict[str, LinkedEvent]:
    """One query per 500 ids: the page's links with their events."""
    found: dict[str, LinkedEvent] = {}
    for chunk in chunks(remote_ids):
        query = (
            select(*_LINKED_COLUMNS).join(events, events.c.id == event_links.c.event_id)
            .where(event_links.c.binding_id == binding_id, event_links.c.remote_id.in_(chunk))
        )
        for row in conn.execute(query).mappings():
            found[row["remote_id"]] = _linked(row)
    return found


def _live_copy_on(binding_id: str) -> Any:
    """The event has a live copy on the binding: a link that does not say the copy was deleted there.
    An event whose copy there is gone (the link says so) is written there again, and the copy met
    next is that one: it is adopted into the old link's place, not imported as a second event."""
    return (
        select(event_links.c.id)
        .where(event_links.c.event_id == events.c.id, event_links.c.binding_id == binding_id,
               event_links.c.remote_deleted.is_(False))
        .exists()
    )


def relink_gone_copies(conn: Connection, binding_id: str, copies: Mapping[str, tuple[str, str | None]]) -> list[str]:
    """event id -> (remote id, series remote id) of a copy met on the binding: events whose link there
    says their copy is gone take it, in the old link's place (its base kept, so the three-way rule
    decides on it as on any change). Returns the remote ids taken."""
    taken: list[str] = []
    for event_id, (remote_id, series_remote_id) in copies.items():
        done = conn.execute(event_links.update().where(
            event_links.c.binding_id == binding_id, event_links.c.event_id == event_id,
            event_links.c.remote_deleted.is_(True),
        ).values(remote_id=remote_id, series_remote_id=series_remote_id, updated_at=utcnow()))
        if done.rowcount:
            taken.append(remote_id)
    return taken


def unlinked_events_with_ids(conn: Connection, calendar_id: str, binding_id: str, ids: Sequence[str]) -> set[str]:
    """Local events of the calendar whose id is one of `ids` and that have no live copy on the binding.

    A remote event whose id is a local event id was created by our own outbox (client-chosen id);
    adopting it instead of importing it again is what keeps a crashed push from duplicating.
    Only ids shaped like ours (32 hex digits) are looked up, so server-made ids cost nothing.
    """
    candidates = [i for i in ids if _LOCAL_ID.fullmatch(i)]
    adoptable: set[str] = set()
    linked = _live_copy_on(binding_id)
    for chunk in chunks(candidates):
        query = select(events.c.id).where(events.c.calendar_id == calendar_id, events.c.id.in_(chunk), ~linked)
        adoptable.update(conn.execute(query).scalars())
    return adoptable


def unlinked_exceptions_at(
    conn: Connection, binding_id: str, starts: Sequence[tuple[str, str]],
) -> dict[tuple[str, str], str]:
    """Live local exceptions with no live copy on the binding, by (series event id, original start)."""
    linked = _live_copy_on(binding_id)
    wanted = set(starts)
    found: dict[tuple[str, str], str] = {}
    for chunk in chunks(sorted({series for series, _ in wanted})):
        rows = conn.execute(select(events.c.id, events.c.recurring_event_id, events.c.original_start).where(
            events.c.recurring_event_id.in_(chunk), events.c.deleted.is_(False), ~linked)).all()
        for row in rows:
            key = (row.recurring_event_id, row.original_start)
            if key in wanted:
                found.setdefault(key, row.id)
    return found


def event_version_and_hash(conn: Connection, event_id: str) -> tuple[int, str, bool]:
    """(version, content hash, deleted) of one event."""
    row = conn.execute(select(events.c.version, events.c.content_hash, events.c.deleted)
                       .where(events.c.id == event_id)).one()
    return int(row.version), str(row.content_hash), bool(row.deleted)


def live_series_remote_ids(conn: Connection, binding_id: str) -> list[str]:
    """Remote ids of the binding's live recurring series (masters with a rule)."""
    query = (
        select(event_links.c.remote_id).join(events, events.c.id == event_links.c.event_id)
        .where(event_links.c.binding_id == binding_id, events.c.deleted.is_(False),
               events.c.recurrence.is_not(None), events.c.recurring_event_id.is_(None))
        .order_by(event_links.c.remote_id)
    )
    return [row[0] for row in conn.execute(query)]


def event_ids_for_remote_ids(conn: Connection, binding_id: str, remote_ids: Iterable[str]) -> dict[str, str]:
    ids = list(set(remote_ids))
    result: dict[str, str] = {}
    for chunk in chunks(ids):
        query = select(event_links.c.remote_id, event_links.c.event_id).where(
            event_links.c.binding_id == binding_id, event_links.c.remote_id.in_(chunk)
        )
        result.update(conn.execute(query).all())  # a list of pairs (a Result has keys(): not a mapping)
    return result


def deleted_event_ids(conn: Connection, event_ids: Iterable[str]) -> set[str]:
    ids = list(set(event_ids))
    found: set[str] = set()
    for chunk in chunks(ids):
        found.update(conn.execute(
            select(events.c.id).where(events.c.id.in_(chunk), events.c.deleted.is_(True))
        ).scalars())
    return found


def deletions_of(conn: Connection, event_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Of these events, the deleted ones: id -> (who deleted it, what proved it)."""
    found: dict[str, tuple[str, str]] = {}
    for chunk in chunks(list(set(event_ids))):
        found.update((i, (by or "", proof or "")) for i, by, proof in conn.execute(
            select(events.c.id, events.c.deleted_by, events.c.deletion_proof)
            .where(events.c.id.in_(chunk), events.c.deleted.is_(True))))
    return found


def insert_events(conn: Connection, rows: list[dict[str, Any]]) -> None:
    _insert_many(conn, events, rows)


def insert_links(conn: Connection, rows: list[dict[str, Any]]) -> None:
    _insert_many(conn, event_links, rows)


_BulkInsert = tuple[str, list[tuple[str, Any]]]
_bulk_inserts: dict[tuple[str, str, tuple[str, ...]], _BulkInsert | None] = {}


def _insert_many(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT many rows that all carry the same keys. On a driver with positional parameters
    (SQLite's), the statement is compiled once and each value goes through its column type's bind
    processor here, straight into the driver's executemany: SQLAlchemy's generic path builds
    parameters row by row, a fifth of the store's time in an initial sync. Elsewhere, that path."""
    if not rows:
        return
    keys = tuple(rows[0])
    cache_key = (conn.dialect.name, table.name, keys)
    if cache_key not in _bulk_inserts:
        _bulk_inserts[cache_key] = _compile_bulk_insert(conn, table, keys)
    bulk = _bulk_inserts[cache_key]
    if bulk is None:
        conn.execute(table.insert(), rows)
        return
    sql, columns = bulk
    if any(len(row) != len(keys) for row in rows):  # (a missing key raises KeyError below)
        raise ValueError(f"rows for {table.name} carry different columns")
    conn.exec_driver_sql(sql, [tuple(row[key] if process is None else process(row[key]) for key, process in columns)
                               for row in rows])


def _compile_bulk_insert(conn: Connection, table: Table, keys: tuple[str, ...]) -> _BulkInsert | None:
    dialect = conn.dialect
    compiled = table.insert().compile(dialect=dialect, column_keys=list(keys))
    order = compiled.positiontup
    if order is None or set(order) != set(keys):  # named parameters, or column defaults to fill in
        return None
    columns = []
    for key in order:
        process: Callable[[Any], Any] | None = table.c[key].type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None and isinstance(table.c[key].type, UTCDateTime):
            process = _same_as_last(process)
        columns.append((key, process))
    return compiled.string, columns


def _same_as_last(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A time column's processor that reuses its last answer for the same (immutable) datetime: a
    page's rows share one `now`, so 1,000 rows cost one conversion, not 1,000."""
    memo: list[tuple[Any, Any]] = [(None, process(None))]  # (value, answer), swapped whole: threads share it

    def run(value: Any) -> Any:
        seen, answer = memo[0]
        if value is not seen:
            answer = process(value)
            memo[0] = (value, answer)
        return answer

    return run


_EVENT_UPDATE_KEYS = (
    "title", "description", "location", "start", "end", "range_start", "range_end", "all_day", "time_zone",
    "status", "recurrence", "original_start", "attendees", "conference", "ical_uid", "sequence",
    "extra", "content_hash", "version", "updated_at_source", "updated_at", "deleted", "deleted_at",
    "deleted_by", "deletion_proof", "recurring_event_id",
)


def update_events(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Batch update; every row carries `event_id` and all of _EVENT_UPDATE_KEYS."""
    if rows:
        write_down_bases(conn, [row["event_id"] for row in rows])
        stmt = (
            update(events).where(events.c.id == bindparam("event_id"))
            .values({k: bindparam(k) for k in _EVENT_UPDATE_KEYS})
        )
        conn.execute(stmt, rows)


def tombstone_events(conn: Connection, proofs: Mapping[str, str], source: str) -> None:
    """Mark events deleted (kept as tombstones so later work, like conference deletion, can see them).

    `proofs` maps each event id to what proved its deletion (the request and its answer); `source` is
    the side that made it. A deletion without a proof is refused: every deletion calsync propagates
    must trace back to one someone made (docs/ARCHITECTURE.md, "Deletions")."""
    missing = sorted(event_id for event_id, proof in proofs.items() if not proof)
    if missing or not source:
        raise ValueError(f"refusing to delete events without a recorded proof: {missing or list(proofs)}")
    now = utcnow()
    stmt = (
        events.update().where(events.c.id == bindparam("doomed_id"), events.c.deleted.is_(False))
        .values(deleted=True, deleted_at=now, updated_at=now, updated_at_source=source, deleted_by=source,
                deletion_proof=bindparam("proof"), version=events.c.version + 1)
    )
    rows = [{"doomed_id": event_id, "proof": proof} for event_id, proof in proofs.items()]
    for at in range(0, len(rows), 500):
        conn.execute(stmt, rows[at:at + 500])


_LINK_UPDATE_KEYS = ("etag", "base_version", "base_hash", "base_snapshot", "remote_updated", "remote_deleted",
                     "series_remote_id", "updated_at")


def update_links(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Batch update; every row carries `link_id` and all of _LINK_UPDATE_KEYS."""
    if rows:
        stmt = (
            update(event_links).where(event_links.c.id == bindparam("link_id"))
            .values({k: bindparam(k) for k in _LINK_UPDATE_KEYS})
        )
        conn.execute(stmt, rows)


def write_down_bases(conn: Connection, event_ids: Sequence[str]) -> None:
    """Before events' content changes: links whose base is 'the event as it is' (base_snapshot NULL,
    which is how a link is born from the content it agrees with) get that content written down, so a
    later conflict still shows what the two sides last agreed on. One indexed query per call."""
    for chunk in chunks(list(dict.fromkeys(event_ids))):
        rows = conn.execute(
            select(event_links.c.id.label("link_id"), events)
            .join(events, events.c.id == event_links.c.event_id)
            .where(event_links.c.event_id.in_(chunk), event_links.c.base_snapshot.is_(None))
        ).mappings().all()
        if rows:
            conn.execute(update(event_links).where(event_links.c.id == bindparam("link_id"))
                         .values(base_snapshot=bindparam("snapshot")),
                         [{"link_id": r["link_id"], "snapshot": row_to_data(r).snapshot()} for r in rows])


def agree_links_with_versions(conn: Connection, event_ids: Sequence[str], binding_id: str) -> None:
    """After a local tombstone caused by the remote, the link's base follows the event's new version."""
    for chunk in chunks(list(event_ids)):
        version = select(events.c.version).where(events.c.id == event_links.c.event_id).scalar_subquery()
        conn.execute(
            event_links.update()
            .where(event_links.c.binding_id == binding_id, event_links.c.event_id.in_(chunk))
            .values(base_version=version, remote_deleted=True, updated_at=utcnow())
        )


def mark_seen(conn: Connection, binding_id: str, remote_ids: Sequence[str], generation: int) -> None:
    for chunk in chunks(list(remote_ids)):
        conn.execute(
            event_links.update()
            .where(event_links.c.binding_id == binding_id, event_links.c.remote_id.in_(chunk))
            .values(seen_generation=generation)
        )


def count_live_links(conn: Connection, binding_id: str) -> int:
    return int(conn.execute(
        select(func.count()).select_from(event_links)
        .where(event_links.c.binding_id == binding_id, event_links.c.remote_deleted.is_(False))
    ).scalar_one())


def _unseen_condition(binding_id: str, generation: int) -> Any:
    return and_(
        event_links.c.binding_id == binding_id,
        event_links.c.remote_deleted.is_(False),
        event_links.c.seen_generation < generation,
    )


def count_unseen_links(conn: Connection, binding_id: str, generation: int) -> int:
    return int(conn.execute(
        select(func.count()).select_from(event_links).where(_unseen_condition(binding_id, generation))
    ).scalar_one())


def unseen_remote_ids(
    conn: Connection, binding_id: str, generation: int, after: int, limit: int,
) -> list[tuple[int, str]]:
    """(link id, remote id) of links the current full sync has not seen, keyset-paged by link id."""
    query = (
        select(event_links.c.id, event_links.c.remote_id)
        .where(_unseen_condition(binding_id, generation), event_links.c.id > after)
        .order_by(event_links.c.id).limit(limit)
    )
    return [(i, r) for i, r in conn.execute(query)]


def live_exception_ids(conn: Connection, series_ids: Sequence[str]) -> list[str]:
    found: list[str] = []
    for chunk in chunks(list(series_ids)):
        found.extend(conn.execute(
            select(events.c.id).where(events.c.recurring_event_id.in_(chunk), events.c.deleted.is_(False))
        ).scalars())
    return found


def live_exceptions_of(conn: Connection, series_ids: Sequence[str]) -> dict[str, str]:
    """Live exceptions of these series: exception id -> its series' id."""
    found: dict[str, str] = {}
    for chunk in chunks(list(series_ids)):
        found.update((e, r) for e, r in conn.execute(
            select(events.c.id, events.c.recurring_event_id)
            .where(events.c.recurring_event_id.in_(chunk), events.c.deleted.is_(False))))
    return found


def live_confirmed_exceptions_of(conn: Connection, series_ids: Sequence[str]) -> list[tuple[str, str, str]]:
    """(exception id, series id, original start) of these series' live exceptions not cancelled."""
    found: list[tuple[str, str, str]] = []
    for chunk in chunks(list(series_ids)):
        found.extend((e, r, o) for e, r, o in conn.execute(
            select(events.c.id, events.c.recurring_event_id, events.c.original_start)
            .where(events.c.recurring_event_id.in_(chunk), events.c.deleted.is_(False),
                   events.c.status != "cancelled", events.c.original_start.is_not(None))))
    return found


def stand_in_starts(conn: Connection, binding_id: str, series_ids: Sequence[str]) -> dict[str, set[str]]:
    """Series id -> original starts of its live occurrences the binding holds as single events that
    stand in for them (the link's remote copy belongs to no series there: Outlook, which cannot
    restore a deleted occurrence, gets a single event instead)."""
    found: dict[str, set[str]] = {}
    for chunk in chunks(list(series_ids)):
        for series_id, original in conn.execute(
            select(events.c.recurring_event_id, events.c.original_start)
            .join(event_links, event_links.c.event_id == events.c.id)
            .where(events.c.recurring_event_id.in_(chunk), events.c.deleted.is_(False),
                   events.c.status != "cancelled", events.c.original_start.is_not(None),
                   event_links.c.binding_id == binding_id, event_links.c.remote_deleted.is_(False),
                   event_links.c.series_remote_id.is_(None))
        ):
            found.setdefault(series_id, set()).add(original)
    return found


def live_series_members(conn: Connection, binding_id: str, series_remote_ids: Iterable[str]) -> set[str]:
    """Remote ids of the binding's live events that belong to these series: each series' own link
    and its exceptions' (both lookups through an index)."""
    ids = list(set(series_remote_ids))
    found: set[str] = set()
    for chunk in chunks(ids):
        # two lookups, not one with OR: SQLite answers an OR of both by reading every link of the binding
        for column in (event_links.c.remote_id, event_links.c.series_remote_id):
            found.update(conn.execute(
                select(event_links.c.remote_id).join(events, events.c.id == event_links.c.event_id)
                .where(event_links.c.binding_id == binding_id, column.in_(chunk), events.c.deleted.is_(False))
            ).scalars())
    return found


def attach_orphan_exceptions(conn: Connection, binding_id: str, new_masters: dict[str, str]) -> int:
    """Link exceptions that arrived before their series to it, now that the series is here.

    `new_masters` maps the remote ids of events this binding just linked (created or adopted) to
    their event ids. Only those can have orphans waiting: an exception whose series was already
    linked found it when it arrived. So the lookup costs what the page holds, through the index of
    exception links, however large the calendar."""
    updates: list[dict[str, str]] = []
    for chunk in chunks(list(new_masters)):
        rows = conn.execute(
            select(event_links.c.event_id, event_links.c.series_remote_id)
            .join(events, events.c.id == event_links.c.event_id)
            .where(event_links.c.binding_id == binding_id, event_links.c.series_remote_id.in_(chunk),
                   events.c.recurring_event_id.is_(None))
        ).all()
        updates += [{"eid": r.event_id, "sid": new_masters[r.series_remote_id]} for r in rows
                    if r.event_id != new_masters[r.series_remote_id]]
    if updates:
        conn.execute(
            update(events).where(events.c.id == bindparam("eid")).values(recurring_event_id=bindparam("sid")),
            updates,
        )
    return len(updates)


def link_of(conn: Connection, event_id: str, binding_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(event_links).where(
        event_links.c.event_id == event_id, event_links.c.binding_id == binding_id)).mappings().first()
    return dict(row) if row else None


def agree_link(
    conn: Connection, event_id: str, binding_id: str, remote_id: str, etag: str, version: int, data: EventData,
    *, create: bool, series_remote_id: str | bool | None = False,
) -> None:
    """After a successful push: the link records the remote copy's id and ETag, and `version` as base.
    `series_remote_id`: the series the remote copy belongs to there, as the provider answered (None:
    a single event there, which for an occurrence is a stand-in, see stand_in_starts); False keeps it."""
    now = utcnow()
    values = {"remote_id": remote_id, "etag": etag, "base_version": version, "base_hash": data.content_hash(),
              "base_snapshot": data.snapshot(), "remote_deleted": False, "updated_at": now}
    if series_remote_id is not False:
        values["series_remote_id"] = series_remote_id
    if create:
        conn.execute(event_links.insert().values(event_id=event_id, binding_id=binding_id, created_at=now,
                                                 seen_generation=0, **values))
    else:
        conn.execute(event_links.update().where(
            event_links.c.event_id == event_id, event_links.c.binding_id == binding_id).values(**values))


def set_link_base_version(conn: Connection, event_id: str, binding_id: str, version: int) -> None:
    """The link agrees with `version` of its event (whose content it already agreed with)."""
    conn.execute(event_links.update().where(
        event_links.c.event_id == event_id, event_links.c.binding_id == binding_id,
    ).values(base_version=version, updated_at=utcnow()))


def deleted_exceptions_linked(conn: Connection, series_id: str, binding_id: str) -> list[dict[str, Any]]:
    """Deleted exceptions of a series whose copy on the binding is still there (link not remote-deleted)."""
    return [dict(r) for r in conn.execute(
        select(events).join(event_links, event_links.c.event_id == events.c.id)
        .where(events.c.recurring_event_id == series_id, events.c.deleted.is_(True),
               event_links.c.binding_id == binding_id, event_links.c.remote_deleted.is_(False))
    ).mappings()]


def forget_exception_copies(conn: Connection, series_id: str, binding_id: str) -> list[tuple[str, int]]:
    """A series made again on the binding (its copy there was deleted): the copies its exceptions had
    there went with the old one, and their links say so now. Returns the series' live exceptions
    (id, version), to be written over the new copy's occurrences."""
    linked = select(event_links.c.event_id).join(events, events.c.id == event_links.c.event_id).where(
        events.c.recurring_event_id == series_id, event_links.c.binding_id == binding_id,
        event_links.c.remote_deleted.is_(False))
    conn.execute(event_links.update().where(
        event_links.c.binding_id == binding_id, event_links.c.event_id.in_(linked.scalar_subquery()),
    ).values(remote_deleted=True, updated_at=utcnow()))
    return [(e, v) for e, v in conn.execute(select(events.c.id, events.c.version).where(
        events.c.recurring_event_id == series_id, events.c.deleted.is_(False)))]


def mark_link_deleted(conn: Connection, event_id: str, binding_id: str, version: int) -> None:
    conn.execute(event_links.update().where(
        event_links.c.event_id == event_id, event_links.c.binding_id == binding_id,
    ).values(remote_deleted=True, base_version=version, updated_at=utcnow()))


# --- conflicts ---------------------------------------------------------------------------


def has_open_conflict(conn: Connection, event_id: str, binding_id: str) -> bool:
    return conn.execute(select(conflicts.c.id).where(
        conflicts.c.event_id == event_id, conflicts.c.binding_id == binding_id, conflicts.c.status == "open",
    )).first() is not None


def open_conflicts_of(conn: Connection, binding_id: str, event_ids: Sequence[str]) -> dict[str, str]:
    """Event id -> id of its open conflict on this binding, for those of `event_ids` that have one."""
    found: dict[str, str] = {}
    for chunk in chunks(list(dict.fromkeys(event_ids))):
        found.update((e, c) for c, e in conn.execute(select(conflicts.c.id, conflicts.c.event_id).where(
            conflicts.c.binding_id == binding_id, conflicts.c.status == "open", conflicts.c.event_id.in_(chunk))))
    return found


def paused_occurrence_starts(conn: Connection, series_id: str, binding_id: str) -> set[str]:
    """Original starts of the series' exceptions paused on the binding by an open conflict."""
    return set(conn.execute(
        select(events.c.original_start).join(conflicts, conflicts.c.event_id == events.c.id)
        .where(events.c.recurring_event_id == series_id, events.c.original_start.is_not(None),
               conflicts.c.binding_id == binding_id, conflicts.c.status == "open")).scalars())


def open_conflicts_of_event(conn: Connection, event_id: str) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(select(conflicts).where(
        conflicts.c.event_id == event_id, conflicts.c.status == "open")).mappings()]


def series_paused_by_remote_delete(conn: Connection, binding_id: str, series_ids: Iterable[str | None]) -> set[str]:
    """Of these series, those whose deletion on the binding waits in an open conflict."""
    found: set[str] = set()
    for chunk in chunks([s for s in dict.fromkeys(series_ids) if s]):
        found.update(conn.execute(select(conflicts.c.event_id).where(
            conflicts.c.binding_id == binding_id, conflicts.c.status == "open", conflicts.c.remote.is_(None),
            conflicts.c.event_id.in_(chunk))).scalars())
    return found


def refresh_conflict_local(conn: Connection, conflict_id: str, local: dict[str, Any] | None, kind: str) -> None:
    """An open conflict's local side changed: it shows the newest (None: deleted here)."""
    conn.execute(conflicts.update().where(conflicts.c.id == conflict_id, conflicts.c.status == "open")
                 .values(local=local, kind=kind, updated_at=utcnow()))


def get_conflict(conn: Connection, conflict_id: str) -> dict[str, Any]:
    row = conn.execute(select(conflicts).where(conflicts.c.id == conflict_id)).mappings().first()
    if row is None:
        raise NotFound(f"no conflict with id {conflict_id!r}")
    return dict(row)


def close_conflict(conn: Connection, conflict_id: str, resolution: str) -> bool:
    """Close an open conflict; False if it was not open any more (someone else resolved it first)."""
    now = utcnow()
    return conn.execute(conflicts.update().where(conflicts.c.id == conflict_id, conflicts.c.status == "open").values(
        status="resolved", resolution=resolution, resolved_at=now, updated_at=now)).rowcount == 1


def record_conflict(
    conn: Connection, *, event_id: str, binding_id: str, kind: str,
    local: dict[str, Any] | None, remote: dict[str, Any] | None, base: dict[str, Any] | None,
    remote_etag: str | None, remote_deletion_proof: str | None = None,
) -> str:
    """Open a conflict, or refresh the one already open for this event and binding with the newest
    remote side (a resolution that saw the older one is then refused: its remote_etag differs)."""
    now = utcnow()
    existing = conn.execute(
        select(conflicts.c.id).where(
            conflicts.c.event_id == event_id, conflicts.c.binding_id == binding_id, conflicts.c.status == "open"
        )
    ).scalar()
    sides = {"kind": kind, "local": local, "remote": remote, "remote_etag": remote_etag,
             "remote_deletion_proof": remote_deletion_proof, "updated_at": now}
    if existing:
        conn.execute(conflicts.update().where(conflicts.c.id == existing).values(**sides))
        return str(existing)
    conflict_id = new_id()
    conn.execute(conflicts.insert().values(
        id=conflict_id, event_id=event_id, binding_id=binding_id, status="open", base=base, created_at=now, **sides,
    ))
    return conflict_id


def list_conflicts(conn: Connection, status: str | None = "open") -> list[dict[str, Any]]:
    query = select(conflicts).order_by(conflicts.c.created_at)
    if status:
        query = query.where(conflicts.c.status == status)
    return [dict(r) for r in conn.execute(query).mappings()]


# --- reading events ---------------------------------------------------------------------


def list_events(
    conn: Connection, *, calendar_id: str | None = None, include_deleted: bool = False,
    start: str | None = None, end: str | None = None,
) -> list[dict[str, Any]]:
    """Events with their links, ordered by start. `start`/`end` are UTC range keys (overlap test)."""
    query = select(events).order_by(events.c.range_start, events.c.id)
    if calendar_id:
        query = query.where(events.c.calendar_id == calendar_id)
    if not include_deleted:
        query = query.where(events.c.deleted.is_(False))
    if start:
        query = query.where(or_(events.c.range_end > start, events.c.recurrence.is_not(None)))
    if end:
        query = query.where(events.c.range_start < end)
    return _with_links(conn, [dict(r) for r in conn.execute(query).mappings()])


def get_events(conn: Connection, event_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Events (tombstones included) with their links, in no particular order."""
    rows: list[dict[str, Any]] = []
    for chunk in chunks(list(event_ids)):
        rows.extend(dict(r) for r in conn.execute(select(events).where(events.c.id.in_(chunk))).mappings())
    return _with_links(conn, rows)


def _with_links(conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    links: dict[str, list[dict[str, Any]]] = {}
    for chunk in chunks([r["id"] for r in rows]):
        for link in conn.execute(
            select(event_links.c.event_id, event_links.c.binding_id, event_links.c.remote_id,
                   event_links.c.etag, event_links.c.base_version, event_links.c.remote_deleted)
            .where(event_links.c.event_id.in_(chunk))
        ).mappings():
            links.setdefault(link["event_id"], []).append(dict(link))
    for row in rows:
        row["links"] = links.get(row["id"], [])
    return rows


def event_data(conn: Connection, event_id: str) -> EventData:
    row = conn.execute(select(events).where(events.c.id == event_id)).mappings().first()
    if row is None:
        raise NotFound(f"no event with id {event_id!r}")
    return row_to_data(row)


def save_local_event(conn: Connection, event_id: str, data: EventData, version: int) -> bool:
    """A local edit: new content at `version`, changed by 'local'. Guarded on the version before it,
    so of two concurrent edits from the same version exactly one wins (False for the loser)."""
    write_down_bases(conn, [event_id])
    return conn.execute(events.update().where(events.c.id == event_id, events.c.version == version - 1).values(
        **event_columns(data), version=version, updated_at_source="local", updated_at=utcnow())).rowcount == 1


def tombstone_local_event(conn: Connection, event_id: str, version: int, proof: str) -> bool:
    """A local delete at `version`, guarded like save_local_event; `proof` says how it was asked for."""
    if not proof:
        raise ValueError("a local delete needs a proof (how it was asked for)")
    now = utcnow()
    return conn.execute(events.update().where(
        events.c.id == event_id, events.c.version == version - 1, events.c.deleted.is_(False),
    ).values(deleted=True, deleted_at=now, updated_at=now, updated_at_source="local", version=version,
             deleted_by="local", deletion_proof=proof)).rowcount == 1


def save_event_from(conn: Connection, event_id: str, data: EventData, version: int, source: str,
                    *, undelete: bool = False) -> None:
    """The event takes content from `source` (a binding), at the given next version."""
    write_down_bases(conn, [event_id])
    values: dict[str, Any] = {**event_columns(data), "version": version, "updated_at_source": source,
                              "updated_at": utcnow()}
    if undelete:
        values.update(deleted=False, deleted_at=None, deleted_by=None, deletion_proof=None)
    conn.execute(events.update().where(events.c.id == event_id).values(**values))


def set_event_extra(conn: Connection, event_id: str, extra: dict[str, Any]) -> None:
    """Provider bookkeeping only: not content, so no new version and no change of hash. Merged by
    provider key, so a write to one provider keeps what the others' copies carry."""
    current = conn.execute(select(events.c.extra).where(events.c.id == event_id)).scalar() or {}
    conn.execute(events.update().where(events.c.id == event_id).values(extra={**current, **(extra or {})}))


def adopt_remote_etag(conn: Connection, event_id: str, binding_id: str, etag: str | None, *,
                      remote_deleted: bool) -> None:
    """Keep-local: the next push carries the remote's current ETag (or re-creates a deleted copy)."""
    conn.execute(event_links.update().where(
        event_links.c.event_id == event_id, event_links.c.binding_id == binding_id,
    ).values(etag=etag, remote_deleted=remote_deleted, updated_at=utcnow()))


def set_local_conference(conn: Connection, event_id: str, conference: dict[str, Any] | None) -> None:
    """A local change of the event's conference: new content, next version, changed by 'local'."""
    data = event_data(conn, event_id)
    data.conference = conference
    conn.execute(events.update().where(events.c.id == event_id).values(
        conference=conference, content_hash=data.content_hash(), version=events.c.version + 1,
        updated_at_source="local", updated_at=utcnow(),
    ))


def count_events(conn: Connection, calendar_id: str | None = None, include_deleted: bool = False) -> int:
    query = select(func.count()).select_from(events)
    if calendar_id:
        query = query.where(events.c.calendar_id == calendar_id)
    if not include_deleted:
        query = query.where(events.c.deleted.is_(False))
    return int(conn.execute(query).scalar_one())
