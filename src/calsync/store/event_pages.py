"""Keyset pages of events for the REST API, and per-calendar event counts.

Offsets get slower and skip or repeat rows while events change; a keyset on (range_start, id),
the order `event_store.list_events` uses, resumes exactly after the last row a client saw.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Select, and_, func, or_, select

from calsync.store import events as event_store
from calsync.store.rows import EventWithLinks
from calsync.store.schema import calendars, events


@dataclass
class EventPage:
    rows: list[EventWithLinks]  # live events with their links, ordered by (range_start, id)
    more: bool  # another page follows the last row


def page_events(
    conn: Connection,
    *,
    calendar_id: str | None = None,
    start: str | None = None,
    end: str | None = None,
    after: tuple[str, str] | None = None,
    limit: int = 500,
    user_id: str | None = None,
) -> EventPage:
    """Live events overlapping [start, end) (UTC range keys), after the keyset `after`, at most `limit`.

    The overlap test is event_store.list_events' own: series with a recurrence rule always overlap a
    window that has a start, because their last occurrence is not stored. With `user_id`, only
    events of that user's calendars.
    """
    query = select(events.c.id).where(events.c.deleted.is_(False))
    if calendar_id is not None:
        query = query.where(events.c.calendar_id == calendar_id)
    if user_id is not None:
        query = query.where(events.c.calendar_id.in_(_calendars_of(user_id)))
    if start is not None:
        query = query.where(or_(events.c.range_end > start, events.c.recurrence.is_not(None)))
    if end is not None:
        query = query.where(events.c.range_start < end)
    if after is not None:
        last_start, last_id = after
        query = query.where(
            or_(events.c.range_start > last_start, and_(events.c.range_start == last_start, events.c.id > last_id))
        )
    ids = list(conn.execute(query.order_by(events.c.range_start, events.c.id).limit(limit + 1)).scalars())
    more = len(ids) > limit
    ids = ids[:limit]
    position = {event_id: n for n, event_id in enumerate(ids)}
    rows = sorted(event_store.get_events(conn, ids), key=lambda row: position[row["id"]])
    return EventPage(rows=rows, more=more)


def event_counts(conn: Connection, user_id: str | None = None) -> dict[str, int]:
    """calendar id -> number of live events, in one grouped query (calendars without events are absent)."""
    query = select(events.c.calendar_id, func.count()).where(events.c.deleted.is_(False))
    if user_id is not None:
        query = query.where(events.c.calendar_id.in_(_calendars_of(user_id)))
    query = query.group_by(events.c.calendar_id)
    return {calendar_id: int(count) for calendar_id, count in conn.execute(query)}


def _calendars_of(user_id: str) -> Select[tuple[str]]:
    return select(calendars.c.id).where(calendars.c.user_id == user_id)
