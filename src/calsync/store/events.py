"""Local event rows: their columns, reading them (with their links), inserting, updating and
tombstoning them. A change of an event's content first writes down the base of the links that
agreed with it as it was (write_down_bases)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, cast

from sqlalchemy import Connection, RowMapping, bindparam, func, or_, select, update

from calsync.model import EventData, canonical_time, range_key, utcnow
from calsync.store import journal
from calsync.store.common import NotFound, chunks, insert_many
from calsync.store.rows import EventWithLinks, LinkSummary
from calsync.store.schema import event_links, events


def event_columns(data: EventData, content_hash: str | None = None) -> dict[str, Any]:
    """The event table's content columns for one EventData (times in canonical form)."""
    start = canonical_time(data.start, data.all_day)
    end = canonical_time(data.end, data.all_day)
    return {
        "title": data.title,
        "description": data.description,
        "location": data.location,
        "start": start,
        "end": end,
        "range_start": range_key(start),
        "range_end": range_key(end),
        "all_day": data.all_day,
        "time_zone": data.time_zone,
        "status": data.status,
        "recurrence": data.recurrence,
        "original_start": data.original_start,
        "attendees": [a.__dict__ for a in data.attendees],
        "conference": data.conference,
        "ical_uid": data.ical_uid,
        "sequence": data.sequence,
        "extra": data.extra,
        "content_hash": content_hash or data.content_hash(),
    }


def row_to_data(row: Mapping[str, Any] | RowMapping) -> EventData:
    """The content of an event row (or of any row holding the event's columns)."""
    return EventData.from_json(
        {
            "title": row["title"],
            "start": row["start"],
            "end": row["end"],
            "all_day": row["all_day"],
            "time_zone": row["time_zone"],
            "description": row["description"],
            "location": row["location"],
            "status": row["status"],
            "recurrence": row["recurrence"],
            "original_start": row["original_start"],
            "attendees": row["attendees"],
            "conference": row["conference"],
            "ical_uid": row["ical_uid"],
            "sequence": row["sequence"],
            "extra": row["extra"],
        }
    )


def event_version_and_hash(conn: Connection, event_id: str) -> tuple[int, str, bool]:
    """(version, content hash, deleted) of one event."""
    row = conn.execute(
        select(events.c.version, events.c.content_hash, events.c.deleted).where(events.c.id == event_id)
    ).one()
    return int(row.version), str(row.content_hash), bool(row.deleted)


def deleted_event_ids(conn: Connection, event_ids: Iterable[str]) -> set[str]:
    ids = list(set(event_ids))
    found: set[str] = set()
    for chunk in chunks(ids):
        found.update(
            conn.execute(select(events.c.id).where(events.c.id.in_(chunk), events.c.deleted.is_(True))).scalars()
        )
    return found


def deletions_of(conn: Connection, event_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Of these events, the deleted ones: id -> (who deleted it, what proved it)."""
    found: dict[str, tuple[str, str]] = {}
    for chunk in chunks(list(set(event_ids))):
        found.update(
            (i, (by or "", proof or ""))
            for i, by, proof in conn.execute(
                select(events.c.id, events.c.deleted_by, events.c.deletion_proof).where(
                    events.c.id.in_(chunk), events.c.deleted.is_(True)
                )
            )
        )
    return found


def insert_events(
    conn: Connection,
    rows: list[dict[str, Any]],
    *,
    author: journal.Author | None = None,
    etags: Mapping[str, str | None] | None = None,
) -> None:
    """New event rows, each journalled as created by `author` (default: the row's source);
    `etags`: the provider's ETag of each copy a binding brought."""
    insert_many(conn, events, rows)
    by_source: dict[str, list[dict[str, Any]]] = {}  # (grouped by text first: an Author's hash is Python code)
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    by_author: dict[journal.Author, list[dict[str, Any]]] = {}
    for source, written in by_source.items():
        by_author.setdefault(author or journal.author_of_source(source), []).extend(written)
    for who, written in by_author.items():
        journal.record_created(conn, written, who, etags or {})


_EVENT_UPDATE_KEYS = (
    "title",
    "description",
    "location",
    "start",
    "end",
    "range_start",
    "range_end",
    "all_day",
    "time_zone",
    "status",
    "recurrence",
    "original_start",
    "attendees",
    "conference",
    "ical_uid",
    "sequence",
    "extra",
    "content_hash",
    "version",
    "updated_at_source",
    "updated_at",
    "deleted",
    "deleted_at",
    "deleted_by",
    "deletion_proof",
    "recurring_event_id",
)


def update_events(
    conn: Connection, rows: list[dict[str, Any]], *, etags: Mapping[str, str | None] | None = None
) -> None:
    """Batch update; every row carries `event_id` and all of _EVENT_UPDATE_KEYS. Journalled as made
    by each row's `updated_at_source`, with the copy's ETag from `etags`."""
    if rows:
        ids = [row["event_id"] for row in rows]
        write_down_bases(conn, ids)
        old = journal.before(conn, ids)
        stmt = (
            update(events)
            .where(events.c.id == bindparam("event_id"))
            .values({k: bindparam(k) for k in _EVENT_UPDATE_KEYS})
        )
        conn.execute(stmt, rows)
        by_source: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_source.setdefault(row["updated_at_source"], []).append(row)
        for source, written in by_source.items():
            changes = journal.changes_of_update(
                old, ((r["event_id"], r["version"], r, bool(r["deleted"])) for r in written), etags
            )
            journal.record(conn, changes, journal.author_of_source(source))


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
        events.update()
        .where(events.c.id == bindparam("doomed_id"), events.c.deleted.is_(False))
        .values(
            deleted=True,
            deleted_at=now,
            updated_at=now,
            updated_at_source=source,
            deleted_by=source,
            deletion_proof=bindparam("proof"),
            version=events.c.version + 1,
        )
    )
    old = journal.before(conn, proofs)
    rows = [{"doomed_id": event_id, "proof": proof} for event_id, proof in proofs.items()]
    for at in range(0, len(rows), 500):
        conn.execute(stmt, rows[at : at + 500])
    changes = [
        journal.Change(event_id, row["calendar_id"], int(row["version"]) + 1, "deleted", fields=["deleted"])
        for event_id, row in old.items()
        if not row["deleted"]
    ]
    journal.record(conn, changes, journal.author_of_source(source))


def write_down_bases(conn: Connection, event_ids: Sequence[str]) -> None:
    """Before events' content changes: links whose base is 'the event as it is' (base_snapshot NULL,
    which is how a link is born from the content it agrees with) get that content written down, so a
    later conflict still shows what the two sides last agreed on. One indexed query per call."""
    for chunk in chunks(list(dict.fromkeys(event_ids))):
        rows = (
            conn.execute(
                select(event_links.c.id.label("link_id"), events)
                .join(events, events.c.id == event_links.c.event_id)
                .where(event_links.c.event_id.in_(chunk), event_links.c.base_snapshot.is_(None))
            )
            .mappings()
            .all()
        )
        if rows:
            conn.execute(
                update(event_links)
                .where(event_links.c.id == bindparam("link_id"))
                .values(base_snapshot=bindparam("snapshot")),
                [{"link_id": r["link_id"], "snapshot": row_to_data(r).snapshot()} for r in rows],
            )


def live_exception_ids(conn: Connection, series_ids: Sequence[str]) -> list[str]:
    found: list[str] = []
    for chunk in chunks(list(series_ids)):
        found.extend(
            conn.execute(
                select(events.c.id).where(events.c.recurring_event_id.in_(chunk), events.c.deleted.is_(False))
            ).scalars()
        )
    return found


def live_exceptions_of(conn: Connection, series_ids: Sequence[str]) -> dict[str, str]:
    """Live exceptions of these series: exception id -> its series' id."""
    found: dict[str, str] = {}
    for chunk in chunks(list(series_ids)):
        found.update(
            (e, r)
            for e, r in conn.execute(
                select(events.c.id, events.c.recurring_event_id).where(
                    events.c.recurring_event_id.in_(chunk), events.c.deleted.is_(False)
                )
            )
        )
    return found


def live_confirmed_exceptions_of(conn: Connection, series_ids: Sequence[str]) -> list[tuple[str, str, str]]:
    """(exception id, series id, original start) of these series' live exceptions not cancelled."""
    found: list[tuple[str, str, str]] = []
    for chunk in chunks(list(series_ids)):
        found.extend(
            (e, r, o)
            for e, r, o in conn.execute(
                select(events.c.id, events.c.recurring_event_id, events.c.original_start).where(
                    events.c.recurring_event_id.in_(chunk),
                    events.c.deleted.is_(False),
                    events.c.status != "cancelled",
                    events.c.original_start.is_not(None),
                )
            )
        )
    return found


def list_events(
    conn: Connection,
    *,
    calendar_id: str | None = None,
    include_deleted: bool = False,
    start: str | None = None,
    end: str | None = None,
) -> list[EventWithLinks]:
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


def get_events(conn: Connection, event_ids: Sequence[str]) -> list[EventWithLinks]:
    """Events (tombstones included) with their links, in no particular order."""
    rows: list[dict[str, Any]] = []
    for chunk in chunks(list(event_ids)):
        rows.extend(dict(r) for r in conn.execute(select(events).where(events.c.id.in_(chunk))).mappings())
    return _with_links(conn, rows)


def _with_links(conn: Connection, rows: list[dict[str, Any]]) -> list[EventWithLinks]:
    """Event rows (all the table's columns) with the `links` each one has."""
    links: dict[str, list[LinkSummary]] = {}
    for chunk in chunks([r["id"] for r in rows]):
        for link in conn.execute(
            select(
                event_links.c.event_id,
                event_links.c.binding_id,
                event_links.c.remote_id,
                event_links.c.etag,
                event_links.c.base_version,
                event_links.c.remote_deleted,
            ).where(event_links.c.event_id.in_(chunk))
        ).mappings():
            links.setdefault(link["event_id"], []).append(cast("LinkSummary", dict(link)))
    for row in rows:
        row["links"] = links.get(row["id"], [])
    return cast("list[EventWithLinks]", rows)


def event_data(conn: Connection, event_id: str) -> EventData:
    row = conn.execute(select(events).where(events.c.id == event_id)).mappings().first()
    if row is None:
        raise NotFound(f"no event with id {event_id!r}")
    return row_to_data(row)


def save_local_event(
    conn: Connection,
    event_id: str,
    data: EventData,
    version: int,
    *,
    author: journal.Author = journal.LIBRARY,
    note: Sequence[str] = (),
    undelete: bool = False,
) -> bool:
    """A local edit: new content at `version`, changed by 'local'. Guarded on the version before it,
    so of two concurrent edits from the same version exactly one wins (False for the loser). `note`:
    entries added to the journal row's `fields` after the changed fields' names ("restored_from:3").
    `undelete`: a tombstone becomes a live event again (journalled as undeleted)."""
    write_down_bases(conn, [event_id])
    old = journal.before(conn, [event_id])
    columns = event_columns(data)
    live: dict[str, Any] = (
        {"deleted": False, "deleted_at": None, "deleted_by": None, "deletion_proof": None} if undelete else {}
    )
    saved = (
        conn.execute(
            events.update()
            .where(events.c.id == event_id, events.c.version == version - 1)
            .values(**columns, **live, version=version, updated_at_source="local", updated_at=utcnow())
        ).rowcount
        == 1
    )
    if saved:
        changes = journal.changes_of_update(old, [(event_id, version, columns, False)])
        if note:
            changes = [replace(c, fields=[*(c.fields or []), *note]) for c in changes]
        journal.record(conn, changes, author)
    return saved


def tombstone_local_event(
    conn: Connection, event_id: str, version: int, proof: str, *, author: journal.Author = journal.LIBRARY
) -> bool:
    """A local delete at `version`, guarded like save_local_event; `proof` says how it was asked for."""
    if not proof:
        raise ValueError("a local delete needs a proof (how it was asked for)")
    now = utcnow()
    deleted = (
        conn.execute(
            events.update()
            .where(
                events.c.id == event_id,
                events.c.version == version - 1,
                events.c.deleted.is_(False),
            )
            .values(
                deleted=True,
                deleted_at=now,
                updated_at=now,
                updated_at_source="local",
                version=version,
                deleted_by="local",
                deletion_proof=proof,
            )
        ).rowcount
        == 1
    )
    if deleted:
        calendar_id = conn.execute(select(events.c.calendar_id).where(events.c.id == event_id)).scalar_one()
        journal.record(conn, [journal.Change(event_id, calendar_id, version, "deleted", fields=["deleted"])], author)
    return deleted


def save_event_from(
    conn: Connection,
    event_id: str,
    data: EventData,
    version: int,
    source: str,
    *,
    undelete: bool = False,
    author: journal.Author | None = None,
    etags: Mapping[str, str | None] | None = None,
) -> None:
    """The event takes content from `source` (a binding), at the given next version."""
    write_down_bases(conn, [event_id])
    old = journal.before(conn, [event_id])
    columns = event_columns(data)
    values: dict[str, Any] = {
        **columns,
        "version": version,
        "updated_at_source": source,
        "updated_at": utcnow(),
    }
    if undelete:
        values.update(deleted=False, deleted_at=None, deleted_by=None, deletion_proof=None)
    conn.execute(events.update().where(events.c.id == event_id).values(**values))
    still_deleted = bool(old[event_id]["deleted"]) and not undelete if event_id in old else False
    changes = journal.changes_of_update(old, [(event_id, version, columns, still_deleted)], etags)
    journal.record(conn, changes, author or journal.author_of_source(source))


def set_event_extra(conn: Connection, event_id: str, extra: dict[str, Any]) -> None:
    """Provider bookkeeping only: not content, so no new version and no change of hash. Merged by
    provider key, so a write to one provider keeps what the others' copies carry."""
    current = conn.execute(select(events.c.extra).where(events.c.id == event_id)).scalar() or {}
    conn.execute(events.update().where(events.c.id == event_id).values(extra={**current, **(extra or {})}))


def set_local_conference(
    conn: Connection, event_id: str, conference: dict[str, Any] | None, *, author: journal.Author = journal.LIBRARY
) -> None:
    """A local change of the event's conference: new content, next version, changed by 'local'."""
    data = event_data(conn, event_id)
    data.conference = conference
    old = journal.before(conn, [event_id])
    conn.execute(
        events.update()
        .where(events.c.id == event_id)
        .values(
            conference=conference,
            content_hash=data.content_hash(),
            version=events.c.version + 1,
            updated_at_source="local",
            updated_at=utcnow(),
        )
    )
    if event_id in old:
        version = int(old[event_id]["version"]) + 1
        changes = journal.changes_of_update(
            old, [(event_id, version, {"conference": conference}, bool(old[event_id]["deleted"]))]
        )
        journal.record(conn, changes, author)


def count_events(conn: Connection, calendar_id: str | None = None, include_deleted: bool = False) -> int:
    query = select(func.count()).select_from(events)
    if calendar_id:
        query = query.where(events.c.calendar_id == calendar_id)
    if not include_deleted:
        query = query.where(events.c.deleted.is_(False))
    return int(conn.execute(query).scalar_one())
