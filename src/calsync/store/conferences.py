"""Queries for conferences, the conference outbox and notification channels."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal, NamedTuple, NotRequired, TypedDict, Unpack, cast

from sqlalchemy import Connection, RowMapping, func, or_, select

from calsync.model import utcnow
from calsync.statuses import OPEN_CHANNEL_STATES, ConferenceState, ConferenceWorkReason
from calsync.store.common import NotFound, new_id, one_of, one_of_chunks
from calsync.store.rows import ChannelRow, ConferenceRow, ConferenceWorkRow
from calsync.store.schema import calendars, channels, conference_outbox, conferences, events


def _conference(row: RowMapping | None) -> ConferenceRow | None:
    return cast("ConferenceRow", dict(row)) if row else None


def get_conference(conn: Connection, row_id: str) -> ConferenceRow:
    row = _conference(conn.execute(select(conferences).where(conferences.c.id == row_id)).mappings().first())
    if row is None:
        raise NotFound(f"no conference with id {row_id!r}")
    return row


def active_conference(conn: Connection, event_id: str) -> ConferenceRow | None:
    return _conference(
        conn.execute(
            select(conferences)
            .where(conferences.c.event_id == event_id, conferences.c.state == "active")
            .order_by(conferences.c.created_at.desc())
        )
        .mappings()
        .first()
    )


def creating_conference(conn: Connection, event_id: str) -> ConferenceRow | None:
    """An unfinished create (intent recorded, meeting not yet): its key must be reused."""
    return _conference(
        conn.execute(select(conferences).where(conferences.c.event_id == event_id, conferences.c.state == "creating"))
        .mappings()
        .first()
    )


def latest_conference(conn: Connection, event_id: str) -> ConferenceRow | None:
    return _conference(
        conn.execute(
            select(conferences)
            .where(conferences.c.event_id == event_id, conferences.c.state != "creating")
            .order_by(conferences.c.created_at.desc())
        )
        .mappings()
        .first()
    )


def count_conferences(conn: Connection, event_id: str) -> int:
    return int(
        conn.execute(
            select(func.count()).select_from(conferences).where(conferences.c.event_id == event_id)
        ).scalar_one()
    )


class NewConference(TypedDict):
    """A `conferences` row as insert_conference writes it (the id and times are its own)."""

    event_id: str
    provider: str
    conference_id: str
    state: ConferenceState
    idempotency_key: str
    join_url: NotRequired[str | None]
    details: NotRequired[dict[str, Any] | None]
    spec_hash: NotRequired[str | None]
    spec: NotRequired[dict[str, Any] | None]


class ConferenceChanges(TypedDict, total=False):
    """The columns of a `conferences` row update_conference writes: those given."""

    event_id: str
    provider: str
    conference_id: str
    join_url: str | None
    details: dict[str, Any] | None
    state: ConferenceState
    spec_hash: str | None
    spec: dict[str, Any] | None
    idempotency_key: str
    last_synced_at: datetime | None
    last_error: str | None


def insert_conference(conn: Connection, **values: Unpack[NewConference]) -> str:
    now = utcnow()
    conference_id = new_id()
    conn.execute(conferences.insert().values(id=conference_id, created_at=now, updated_at=now, **values))
    return conference_id


def update_conference(conn: Connection, row_id: str, **values: Unpack[ConferenceChanges]) -> None:
    conn.execute(conferences.update().where(conferences.c.id == row_id).values(updated_at=utcnow(), **values))


def list_conferences(conn: Connection, state: ConferenceState | None = None) -> list[ConferenceRow]:
    query = select(conferences).order_by(conferences.c.created_at)
    if state:
        query = query.where(conferences.c.state == state)
    return cast("list[ConferenceRow]", [dict(r) for r in conn.execute(query).mappings()])


def events_with_active_conferences(conn: Connection, event_ids: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for chunk in one_of_chunks(conn, list(set(event_ids))):
        found.update(
            conn.execute(
                select(conferences.c.event_id).where(
                    one_of(conn, conferences.c.event_id, chunk), conferences.c.state == "active"
                )
            ).scalars()
        )
    return found


class ChangedEvent(NamedTuple):
    """What conference queueing needs of one changed event."""

    event_id: str
    conference: dict[str, Any] | None
    recurring_event_id: str | None = None


def enqueue_for_changed_events(conn: Connection, changed: Iterable[ChangedEvent], deleted_ids: Iterable[str]) -> int:
    """Queue conference work for changed events that carry one of our conferences or had one (called
    inside the transaction that changed them). Exceptions of a series carry none of their own."""
    changed = list(changed)
    deleted_ids = list(deleted_ids)
    carrying = [
        c.event_id for c in changed if c.conference and c.conference.get("provider") and not c.recurring_event_id
    ]
    ids = [c.event_id for c in changed] + deleted_ids
    had = events_with_active_conferences(conn, ids) if ids else set()
    wanted = set(carrying) | had
    return enqueue(conn, wanted, "inbound") if wanted else 0


def enqueue(
    conn: Connection, event_ids: Iterable[str], reason: ConferenceWorkReason, now: datetime | None = None
) -> int:
    """One pending row per event: events that already have one are left alone (the work collapses)."""
    now = now or utcnow()
    ids = list(set(event_ids))
    pending: set[str] = set()
    for chunk in one_of_chunks(conn, ids):
        pending.update(
            conn.execute(
                select(conference_outbox.c.event_id).where(
                    one_of(conn, conference_outbox.c.event_id, chunk), conference_outbox.c.status == "pending"
                )
            ).scalars()
        )
    rows = [
        {
            "event_id": e,
            "status": "pending",
            "reason": reason,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for e in ids
        if e not in pending
    ]
    if rows:
        conn.execute(conference_outbox.insert(), rows)
    return len(rows)


def due_work(conn: Connection, now: datetime, after: int = 0, limit: int = 500) -> list[ConferenceWorkRow]:
    query = (
        select(conference_outbox)
        .where(
            conference_outbox.c.status == "pending",
            conference_outbox.c.next_attempt_at <= now,
            conference_outbox.c.id > after,
            or_(conference_outbox.c.lease_until.is_(None), conference_outbox.c.lease_until < now),
        )
        .order_by(conference_outbox.c.id)
        .limit(limit)
    )
    return cast("list[ConferenceWorkRow]", [dict(r) for r in conn.execute(query).mappings()])


def finish_work(
    conn: Connection, row_id: int, status: Literal["done", "failed"] = "done", error: str | None = None
) -> None:
    conn.execute(
        conference_outbox.update()
        .where(conference_outbox.c.id == row_id)
        .values(status=status, last_error=error, updated_at=utcnow())
    )


def retry_work_later(conn: Connection, row_id: int, when: datetime, error: str) -> None:
    conn.execute(
        conference_outbox.update()
        .where(conference_outbox.c.id == row_id)
        .values(
            attempts=conference_outbox.c.attempts + 1,
            next_attempt_at=when,
            last_error=error,
            lease_owner=None,
            lease_until=None,
            updated_at=utcnow(),
        )
    )


def backlog(conn: Connection, user_id: str | None = None) -> int:
    """Conference work waiting: all of it, or for events of the user's calendars."""
    query = select(func.count()).select_from(conference_outbox).where(conference_outbox.c.status == "pending")
    if user_id is not None:
        owned = select(events.c.id).join(calendars, calendars.c.id == events.c.calendar_id)
        query = query.where(conference_outbox.c.event_id.in_(owned.where(calendars.c.user_id == user_id)))
    return int(conn.execute(query).scalar_one())


def ensure_channel_intent(conn: Connection, binding_id: str) -> bool:
    """Record that the binding needs change notifications, unless a channel (or intent) exists already."""
    existing = conn.execute(
        select(channels.c.id).where(channels.c.binding_id == binding_id, channels.c.state.in_(OPEN_CHANNEL_STATES))
    ).first()
    if existing:
        return False
    now = utcnow()
    conn.execute(
        channels.insert().values(id=new_id(), binding_id=binding_id, state="intent", created_at=now, updated_at=now)
    )
    return True


def list_channels(conn: Connection, binding_id: str | None = None) -> list[ChannelRow]:
    query = select(channels).order_by(channels.c.created_at)
    if binding_id:
        query = query.where(channels.c.binding_id == binding_id)
    return cast("list[ChannelRow]", [dict(r) for r in conn.execute(query).mappings()])
