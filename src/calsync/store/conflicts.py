"""Conflicts: opening or refreshing one per event and binding, reading them, closing them, and
what open ones pause (an event's pushes, a series' occurrences, a series' deletion)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import Connection, select

from calsync.model import utcnow
from calsync.statuses import ConflictKind, ConflictStatus
from calsync.store import journal
from calsync.store.common import NotFound, chunks, new_id
from calsync.store.rows import ConflictRow
from calsync.store.schema import calendars, conflicts, events


def has_open_conflict(conn: Connection, event_id: str, binding_id: str) -> bool:
    return (
        conn.execute(
            select(conflicts.c.id).where(
                conflicts.c.event_id == event_id,
                conflicts.c.binding_id == binding_id,
                conflicts.c.status == "open",
            )
        ).first()
        is not None
    )


def open_conflicts_of(conn: Connection, binding_id: str, event_ids: Sequence[str]) -> dict[str, str]:
    """Event id -> id of its open conflict on this binding, for those of `event_ids` that have one."""
    found: dict[str, str] = {}
    for chunk in chunks(list(dict.fromkeys(event_ids))):
        found.update(
            (e, c)
            for c, e in conn.execute(
                select(conflicts.c.id, conflicts.c.event_id).where(
                    conflicts.c.binding_id == binding_id, conflicts.c.status == "open", conflicts.c.event_id.in_(chunk)
                )
            )
        )
    return found


def paused_occurrence_starts(conn: Connection, series_id: str, binding_id: str) -> set[str]:
    """Original starts of the series' exceptions paused on the binding by an open conflict."""
    return set(
        conn.execute(
            select(events.c.original_start)
            .join(conflicts, conflicts.c.event_id == events.c.id)
            .where(
                events.c.recurring_event_id == series_id,
                events.c.original_start.is_not(None),
                conflicts.c.binding_id == binding_id,
                conflicts.c.status == "open",
            )
        ).scalars()
    )


def open_conflicts_of_event(conn: Connection, event_id: str) -> list[ConflictRow]:
    return cast(
        "list[ConflictRow]",
        [
            dict(r)
            for r in conn.execute(
                select(conflicts).where(conflicts.c.event_id == event_id, conflicts.c.status == "open")
            ).mappings()
        ],
    )


def series_paused_by_remote_delete(conn: Connection, binding_id: str, series_ids: Iterable[str | None]) -> set[str]:
    """Of these series, those whose deletion on the binding waits in an open conflict."""
    found: set[str] = set()
    for chunk in chunks([s for s in dict.fromkeys(series_ids) if s]):
        found.update(
            conn.execute(
                select(conflicts.c.event_id).where(
                    conflicts.c.binding_id == binding_id,
                    conflicts.c.status == "open",
                    conflicts.c.remote.is_(None),
                    conflicts.c.event_id.in_(chunk),
                )
            ).scalars()
        )
    return found


def refresh_conflict_local(
    conn: Connection, conflict_id: str, local: dict[str, Any] | None, kind: ConflictKind
) -> None:
    """An open conflict's local side changed: it shows the newest (None: deleted here)."""
    conn.execute(
        conflicts.update()
        .where(conflicts.c.id == conflict_id, conflicts.c.status == "open")
        .values(local=local, kind=kind, updated_at=utcnow())
    )


def get_conflict(conn: Connection, conflict_id: str) -> ConflictRow:
    row = conn.execute(select(conflicts).where(conflicts.c.id == conflict_id)).mappings().first()
    if row is None:
        raise NotFound(f"no conflict with id {conflict_id!r}")
    return cast("ConflictRow", dict(row))


def close_conflict(
    conn: Connection, conflict_id: str, resolution: str, *, author: journal.Author | None = None
) -> bool:
    """Close an open conflict; False if it was not open any more (someone else resolved it first).
    Journalled as resolved by `author` (default: the binding, when a sync settled it)."""
    now = utcnow()
    closed = (
        conn.execute(
            conflicts.update()
            .where(conflicts.c.id == conflict_id, conflicts.c.status == "open")
            .values(status="resolved", resolution=resolution, resolved_at=now, updated_at=now)
        ).rowcount
        == 1
    )
    if closed:
        row = conn.execute(
            select(conflicts.c.event_id, conflicts.c.binding_id).where(conflicts.c.id == conflict_id)
        ).one()
        who = author or journal.author_of_binding(conn, row.binding_id)
        journal.record_conflict(conn, row.event_id, conflict_id, "conflict-resolved", who, resolution=resolution)
    return closed


def record_conflict(
    conn: Connection,
    *,
    event_id: str,
    binding_id: str,
    kind: ConflictKind,
    local: dict[str, Any] | None,
    remote: dict[str, Any] | None,
    base: dict[str, Any] | None,
    remote_etag: str | None,
    remote_deletion_proof: str | None = None,
) -> str:
    """Open a conflict, or refresh the one already open for this event and binding with the newest
    remote side (a resolution that saw the older one is then refused: its remote_etag differs)."""
    now = utcnow()
    existing = conn.execute(
        select(conflicts.c.id).where(
            conflicts.c.event_id == event_id, conflicts.c.binding_id == binding_id, conflicts.c.status == "open"
        )
    ).scalar()
    sides = {
        "kind": kind,
        "local": local,
        "remote": remote,
        "remote_etag": remote_etag,
        "remote_deletion_proof": remote_deletion_proof,
        "updated_at": now,
    }
    if existing:
        conn.execute(conflicts.update().where(conflicts.c.id == existing).values(**sides))
        return str(existing)
    conflict_id = new_id()
    journal.record_conflict(
        conn, event_id, conflict_id, "conflict-opened", journal.author_of_binding(conn, binding_id), kind=kind
    )
    conn.execute(
        conflicts.insert().values(
            id=conflict_id,
            event_id=event_id,
            binding_id=binding_id,
            status="open",
            base=base,
            created_at=now,
            **sides,
        )
    )
    return conflict_id


def list_conflicts(
    conn: Connection, status: ConflictStatus | None = "open", user_id: str | None = None
) -> list[ConflictRow]:
    """Conflicts in this status (None: all), oldest first; with `user_id`, on that user's calendars."""
    query = select(conflicts).order_by(conflicts.c.created_at)
    if status:
        query = query.where(conflicts.c.status == status)
    if user_id is not None:
        owned = select(events.c.id).join(calendars, calendars.c.id == events.c.calendar_id)
        query = query.where(conflicts.c.event_id.in_(owned.where(calendars.c.user_id == user_id)))
    return cast("list[ConflictRow]", [dict(r) for r in conn.execute(query).mappings()])
