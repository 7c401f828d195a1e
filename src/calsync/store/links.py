"""Event links: which remote copy on a binding each local event has, what the two last agreed on
(the base), and what a full sync has seen; and the lookups that join links to their events
(adoption of copies, series members, stand-ins, orphan exceptions)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, RowMapping, and_, bindparam, func, select, update

from calsync.model import EventData, utcnow
from calsync.store.common import chunks, insert_many, one_of, one_of_chunks
from calsync.store.events import row_to_data
from calsync.store.rows import EventLinkRow, EventRow
from calsync.store.schema import event_links, events

_LOCAL_ID = re.compile(r"[0-9a-f]{32}")


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


_LINKED_COLUMNS: list[Any] = [
    event_links.c.id.label("link_id"),
    event_links.c.remote_id,
    event_links.c.etag,
    event_links.c.base_version,
    event_links.c.base_hash,
    event_links.c.base_snapshot,
    event_links.c.remote_deleted,
    event_links.c.remote_updated,
    event_links.c.series_remote_id,
    events,
]


def _linked(row: Mapping[str, Any] | RowMapping) -> LinkedEvent:
    data = row_to_data(row)
    return LinkedEvent(
        link_id=row["link_id"],
        event_id=row["id"],
        remote_id=row["remote_id"],
        etag=row["etag"],
        base_version=row["base_version"],
        base_hash=row["base_hash"],
        base_snapshot=row["base_snapshot"] if row["base_snapshot"] is not None else data.snapshot(),
        remote_deleted=row["remote_deleted"],
        remote_updated=row["remote_updated"],
        series_remote_id=row["series_remote_id"],
        version=row["version"],
        deleted=row["deleted"],
        content_hash=row["content_hash"],
        updated_at=row["updated_at"],
        recurring_event_id=row["recurring_event_id"],
        data=data,
    )


def links_by_remote_id(conn: Connection, binding_id: str, remote_ids: Sequence[str]) -> dict[str, LinkedEvent]:
    """One query per 500 ids: the page's links with their events."""
    found: dict[str, LinkedEvent] = {}
    for chunk in one_of_chunks(conn, remote_ids):
        query = (
            select(*_LINKED_COLUMNS)
            .join(events, events.c.id == event_links.c.event_id)
            .where(event_links.c.binding_id == binding_id, one_of(conn, event_links.c.remote_id, chunk))
        )
        for row in conn.execute(query).mappings():
            found[row["remote_id"]] = _linked(row)
    return found


def gone_links_of(conn: Connection, binding_id: str, event_ids: Sequence[str]) -> dict[str, LinkedEvent]:
    """Event id -> its link on the binding, for those of these events whose link says the copy there
    is gone (remote_deleted): the copy met next there takes that link's place (relink_gone_copies)."""
    found: dict[str, LinkedEvent] = {}
    for chunk in one_of_chunks(conn, list(dict.fromkeys(event_ids))):
        query = (
            select(*_LINKED_COLUMNS)
            .join(events, events.c.id == event_links.c.event_id)
            .where(
                event_links.c.binding_id == binding_id,
                one_of(conn, event_links.c.event_id, chunk),
                event_links.c.remote_deleted.is_(True),
            )
        )
        for row in conn.execute(query).mappings():
            found[row["id"]] = _linked(row)
    return found


def _live_copy_on(binding_id: str) -> Any:
    """The event has a live copy on the binding: a link that does not say the copy was deleted there.
    An event whose copy there is gone (the link says so) is written there again, and the copy met
    next is that one: it is adopted into the old link's place, not imported as a second event."""
    return (
        select(event_links.c.id)
        .where(
            event_links.c.event_id == events.c.id,
            event_links.c.binding_id == binding_id,
            event_links.c.remote_deleted.is_(False),
        )
        .exists()
    )


def relink_gone_copies(conn: Connection, binding_id: str, copies: Mapping[str, tuple[str, str | None]]) -> list[str]:
    """event id -> (remote id, series remote id) of a copy met on the binding: events whose link there
    says their copy is gone take it, in the old link's place (its base kept, so the three-way rule
    decides on it as on any change). Returns the remote ids taken."""
    taken: list[str] = []
    for event_id, (remote_id, series_remote_id) in copies.items():
        done = conn.execute(
            event_links.update()
            .where(
                event_links.c.binding_id == binding_id,
                event_links.c.event_id == event_id,
                event_links.c.remote_deleted.is_(True),
            )
            .values(remote_id=remote_id, series_remote_id=series_remote_id, updated_at=utcnow())
        )
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
    for chunk in one_of_chunks(conn, candidates):
        query = select(events.c.id).where(
            events.c.calendar_id == calendar_id, one_of(conn, events.c.id, chunk), ~linked
        )
        adoptable.update(conn.execute(query).scalars())
    return adoptable


def unlinked_exceptions_at(
    conn: Connection,
    binding_id: str,
    starts: Sequence[tuple[str, str]],
) -> dict[tuple[str, str], str]:
    """Live local exceptions with no live copy on the binding, by (series event id, original start)."""
    linked = _live_copy_on(binding_id)
    wanted = set(starts)
    found: dict[tuple[str, str], str] = {}
    for chunk in one_of_chunks(conn, sorted({series for series, _ in wanted})):
        rows = conn.execute(
            select(events.c.id, events.c.recurring_event_id, events.c.original_start).where(
                one_of(conn, events.c.recurring_event_id, chunk), events.c.deleted.is_(False), ~linked
            )
        ).all()
        for row in rows:
            key = (row.recurring_event_id, row.original_start)
            if key in wanted:
                found.setdefault(key, row.id)
    return found


def live_series_remote_ids(conn: Connection, binding_id: str) -> list[str]:
    """Remote ids of the binding's live recurring series (masters with a rule)."""
    query = (
        select(event_links.c.remote_id)
        .join(events, events.c.id == event_links.c.event_id)
        .where(
            event_links.c.binding_id == binding_id,
            events.c.deleted.is_(False),
            events.c.recurrence.is_not(None),
            events.c.recurring_event_id.is_(None),
        )
        .order_by(event_links.c.remote_id)
    )
    return [row[0] for row in conn.execute(query)]


def event_ids_for_remote_ids(conn: Connection, binding_id: str, remote_ids: Iterable[str]) -> dict[str, str]:
    ids = list(set(remote_ids))
    result: dict[str, str] = {}
    for chunk in one_of_chunks(conn, ids):
        query = select(event_links.c.remote_id, event_links.c.event_id).where(
            event_links.c.binding_id == binding_id, one_of(conn, event_links.c.remote_id, chunk)
        )
        result.update(conn.execute(query).all())  # a list of pairs (a Result has keys(): not a mapping)
    return result


def insert_links(conn: Connection, rows: list[dict[str, Any]]) -> None:
    insert_many(conn, event_links, rows)


_LINK_UPDATE_KEYS = (
    "etag",
    "base_version",
    "base_hash",
    "base_snapshot",
    "remote_updated",
    "remote_deleted",
    "series_remote_id",
    "updated_at",
)


def update_links(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Batch update; every row carries `link_id` and all of _LINK_UPDATE_KEYS."""
    if rows:
        stmt = (
            update(event_links)
            .where(event_links.c.id == bindparam("link_id"))
            .values({k: bindparam(k) for k in _LINK_UPDATE_KEYS})
        )
        conn.execute(stmt, rows)


def agree_links_with_versions(conn: Connection, event_ids: Sequence[str], binding_id: str) -> None:
    """After a local tombstone caused by the remote, the link's base follows the event's new version."""
    for chunk in one_of_chunks(conn, list(event_ids)):
        version = select(events.c.version).where(events.c.id == event_links.c.event_id).scalar_subquery()
        conn.execute(
            event_links.update()
            .where(event_links.c.binding_id == binding_id, one_of(conn, event_links.c.event_id, chunk))
            .values(base_version=version, remote_deleted=True, updated_at=utcnow())
        )


def mark_seen(conn: Connection, binding_id: str, remote_ids: Sequence[str], generation: int) -> None:
    for chunk in one_of_chunks(conn, list(remote_ids)):
        conn.execute(
            event_links.update()
            .where(event_links.c.binding_id == binding_id, one_of(conn, event_links.c.remote_id, chunk))
            .values(seen_generation=generation)
        )


def count_live_links(conn: Connection, binding_id: str) -> int:
    return int(
        conn.execute(
            select(func.count())
            .select_from(event_links)
            .where(event_links.c.binding_id == binding_id, event_links.c.remote_deleted.is_(False))
        ).scalar_one()
    )


def _unseen_condition(binding_id: str, generation: int) -> Any:
    return and_(
        event_links.c.binding_id == binding_id,
        event_links.c.remote_deleted.is_(False),
        event_links.c.seen_generation < generation,
    )


def count_unseen_links(conn: Connection, binding_id: str, generation: int) -> int:
    return int(
        conn.execute(
            select(func.count()).select_from(event_links).where(_unseen_condition(binding_id, generation))
        ).scalar_one()
    )


def unseen_remote_ids(
    conn: Connection,
    binding_id: str,
    generation: int,
    after: int,
    limit: int,
) -> list[tuple[int, str]]:
    """(link id, remote id) of links the current full sync has not seen, keyset-paged by link id."""
    query = (
        select(event_links.c.id, event_links.c.remote_id)
        .where(_unseen_condition(binding_id, generation), event_links.c.id > after)
        .order_by(event_links.c.id)
        .limit(limit)
    )
    return [(i, r) for i, r in conn.execute(query)]


def _stand_in_on(binding_id: str) -> tuple[Any, ...]:
    """An occurrence held on the binding as a single event of its own (a stand-in): a live link whose
    remote copy belongs to no series there, of an event that is an occurrence here."""
    return (
        event_links.c.binding_id == binding_id,
        event_links.c.remote_deleted.is_(False),
        event_links.c.series_remote_id.is_(None),
        events.c.original_start.is_not(None),
    )


def stand_ins_of(conn: Connection, binding_id: str, event_ids: Sequence[str]) -> set[str]:
    """Of these exceptions, those the binding holds as single events of their own (stand-ins: a live
    link whose remote copy belongs to no series there), which a deletion of their series there
    leaves behind."""
    found: set[str] = set()
    for chunk in one_of_chunks(conn, list(event_ids)):
        found.update(
            conn.execute(
                select(event_links.c.event_id)
                .join(events, events.c.id == event_links.c.event_id)
                .where(one_of(conn, event_links.c.event_id, chunk), *_stand_in_on(binding_id))
            ).scalars()
        )
    return found


def stand_in_starts(conn: Connection, binding_id: str, series_ids: Sequence[str]) -> dict[str, set[str]]:
    """Series id -> original starts of its live occurrences the binding holds as single events that
    stand in for them (the link's remote copy belongs to no series there: Outlook, which cannot
    restore a deleted occurrence, gets a single event instead)."""
    found: dict[str, set[str]] = {}
    for chunk in one_of_chunks(conn, list(series_ids)):
        for series_id, original in conn.execute(
            select(events.c.recurring_event_id, events.c.original_start)
            .join(event_links, event_links.c.event_id == events.c.id)
            .where(
                one_of(conn, events.c.recurring_event_id, chunk),
                events.c.deleted.is_(False),
                events.c.status != "cancelled",
                *_stand_in_on(binding_id),
            )
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
            found.update(
                conn.execute(
                    select(event_links.c.remote_id)
                    .join(events, events.c.id == event_links.c.event_id)
                    .where(event_links.c.binding_id == binding_id, column.in_(chunk), events.c.deleted.is_(False))
                ).scalars()
            )
    return found


def attach_orphan_exceptions(conn: Connection, binding_id: str, new_masters: dict[str, str]) -> int:
    """Link exceptions that arrived before their series to it, now that the series is here.

    `new_masters` maps the remote ids of events this binding just linked (created or adopted) to
    their event ids. Only those can have orphans waiting: an exception whose series was already
    linked found it when it arrived. So the lookup costs what the page holds, through the index of
    exception links, however large the calendar."""
    updates: list[dict[str, str]] = []
    for chunk in one_of_chunks(conn, list(new_masters)):
        rows = conn.execute(
            select(event_links.c.event_id, event_links.c.series_remote_id)
            .join(events, events.c.id == event_links.c.event_id)
            .where(
                event_links.c.binding_id == binding_id,
                one_of(conn, event_links.c.series_remote_id, chunk),
                events.c.recurring_event_id.is_(None),
            )
        ).all()
        updates += [
            {"eid": r.event_id, "sid": new_masters[r.series_remote_id]}
            for r in rows
            if r.event_id != new_masters[r.series_remote_id]
        ]
    if updates:
        conn.execute(
            update(events).where(events.c.id == bindparam("eid")).values(recurring_event_id=bindparam("sid")),
            updates,
        )
    return len(updates)


def link_of(conn: Connection, event_id: str, binding_id: str) -> EventLinkRow | None:
    row = (
        conn.execute(
            select(event_links).where(event_links.c.event_id == event_id, event_links.c.binding_id == binding_id)
        )
        .mappings()
        .first()
    )
    return cast("EventLinkRow", dict(row)) if row else None


def agree_link(
    conn: Connection,
    event_id: str,
    binding_id: str,
    remote_id: str,
    etag: str | None,
    version: int,
    data: EventData,
    *,
    create: bool,
    series_remote_id: str | bool | None = False,
) -> None:
    """After a successful push: the link records the remote copy's id and ETag (None, as the column
    allows: a conflict's remote_etag may be), and `version` as base.
    `series_remote_id`: the series the remote copy belongs to there, as the provider answered (None:
    a single event there, which for an occurrence is a stand-in, see stand_in_starts); False keeps it."""
    now = utcnow()
    values = {
        "remote_id": remote_id,
        "etag": etag,
        "base_version": version,
        "base_hash": data.content_hash(),
        "base_snapshot": data.snapshot(),
        "remote_deleted": False,
        "updated_at": now,
    }
    if series_remote_id is not False:
        values["series_remote_id"] = series_remote_id
    if create:
        conn.execute(
            event_links.insert().values(
                event_id=event_id, binding_id=binding_id, created_at=now, seen_generation=0, **values
            )
        )
    else:
        conn.execute(
            event_links.update()
            .where(event_links.c.event_id == event_id, event_links.c.binding_id == binding_id)
            .values(**values)
        )


def set_link_base_version(conn: Connection, event_id: str, binding_id: str, version: int) -> None:
    """The link agrees with `version` of its event (whose content it already agreed with)."""
    conn.execute(
        event_links.update()
        .where(
            event_links.c.event_id == event_id,
            event_links.c.binding_id == binding_id,
        )
        .values(base_version=version, updated_at=utcnow())
    )


def deleted_exceptions_linked(conn: Connection, series_id: str, binding_id: str) -> list[EventRow]:
    """Deleted exceptions of a series whose copy on the binding is still there (link not remote-deleted)."""
    return cast(
        "list[EventRow]",
        [
            dict(r)
            for r in conn.execute(
                select(events)
                .join(event_links, event_links.c.event_id == events.c.id)
                .where(
                    events.c.recurring_event_id == series_id,
                    events.c.deleted.is_(True),
                    event_links.c.binding_id == binding_id,
                    event_links.c.remote_deleted.is_(False),
                )
            ).mappings()
        ],
    )


def forget_exception_copies(conn: Connection, series_id: str, binding_id: str) -> list[tuple[str, int]]:
    """A series made again on the binding (its copy there was deleted): the copies its exceptions had
    there went with the old one, and their links say so now. Returns the series' live exceptions
    (id, version), to be written over the new copy's occurrences. A single event standing in for an
    occurrence there (a link with no series_remote_id: Outlook) is an event of its own, not gone with
    the series: its link stays, and the occurrence's own deletion deletes it."""
    linked = (
        select(event_links.c.event_id)
        .join(events, events.c.id == event_links.c.event_id)
        .where(
            events.c.recurring_event_id == series_id,
            event_links.c.binding_id == binding_id,
            event_links.c.remote_deleted.is_(False),
            event_links.c.series_remote_id.is_not(None),
        )
    )
    conn.execute(
        event_links.update()
        .where(
            event_links.c.binding_id == binding_id,
            event_links.c.event_id.in_(linked.scalar_subquery()),
        )
        .values(remote_deleted=True, updated_at=utcnow())
    )
    return [
        (e, v)
        for e, v in conn.execute(
            select(events.c.id, events.c.version).where(
                events.c.recurring_event_id == series_id, events.c.deleted.is_(False)
            )
        )
    ]


def mark_link_deleted(conn: Connection, event_id: str, binding_id: str, version: int) -> None:
    conn.execute(
        event_links.update()
        .where(
            event_links.c.event_id == event_id,
            event_links.c.binding_id == binding_id,
        )
        .values(remote_deleted=True, base_version=version, updated_at=utcnow())
    )


def adopt_remote_etag(
    conn: Connection, event_id: str, binding_id: str, etag: str | None, *, remote_deleted: bool
) -> None:
    """Keep-local: the next push carries the remote's current ETag (or re-creates a deleted copy)."""
    conn.execute(
        event_links.update()
        .where(
            event_links.c.event_id == event_id,
            event_links.c.binding_id == binding_id,
        )
        .values(etag=etag, remote_deleted=remote_deleted, updated_at=utcnow())
    )
