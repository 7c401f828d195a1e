"""Queries for the outbox of local changes, and the per-binding sync state of events."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import Connection, and_, bindparam, func, select, update

from calsync.model import utcnow
from calsync.statuses import PUSHING, SyncState
from calsync.store.common import chunks
from calsync.store.rows import EventRow, EventSyncState, OutboxRow
from calsync.store.schema import bindings, conflicts, event_links, outbox


def push_bindings(conn: Connection, calendar_id: str) -> list[str]:
    return list(
        conn.execute(
            select(bindings.c.id)
            .where(bindings.c.calendar_id == calendar_id, bindings.c.direction.in_(PUSHING))
            .order_by(bindings.c.created_at)
        ).scalars()
    )


def enqueue(
    conn: Connection,
    calendar_id: str,
    changes: Sequence[tuple[str, int]],
    *,
    skip_binding: str | None = None,
    bindings_to: Sequence[str] | None = None,
) -> int:
    """Queue (event id, version) for the calendar's push-enabled bindings (but `skip_binding`, where
    the change came from). A change to an event that is still queued for a binding bumps that row
    instead of adding one, so queued edits collapse into one remote write."""
    targets = [
        b for b in (bindings_to if bindings_to is not None else push_bindings(conn, calendar_id)) if b != skip_binding
    ]
    if not targets or not changes:
        return 0
    now = utcnow()
    versions = dict(changes)
    written = 0
    for binding_id in targets:
        pending: dict[str, int] = {}
        for chunk in chunks(list(versions)):
            pending.update(
                (e, i)
                for e, i in conn.execute(
                    select(outbox.c.event_id, outbox.c.id).where(
                        outbox.c.binding_id == binding_id,
                        outbox.c.event_id.in_(chunk),
                        outbox.c.status.in_(("pending", "held")),
                    )
                )
            )
        bumps = [{"row_id": pending[e], "v": v} for e, v in versions.items() if e in pending]
        if bumps:
            conn.execute(
                update(outbox).where(outbox.c.id == bindparam("row_id")).values(version=bindparam("v"), updated_at=now),
                bumps,
            )
        fresh = [
            {
                "binding_id": binding_id,
                "event_id": e,
                "version": v,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for e, v in versions.items()
            if e not in pending
        ]
        if fresh:
            conn.execute(outbox.insert(), fresh)
        written += len(bumps) + len(fresh)
    return written


def pending_for_binding(conn: Connection, binding_id: str, now: datetime, limit: int = 100) -> list[OutboxRow]:
    """The binding's queue in order (held rows are skipped: their event waits for a decision)."""
    rows = conn.execute(
        select(outbox)
        .where(outbox.c.binding_id == binding_id, outbox.c.status == "pending")
        .order_by(outbox.c.id)
        .limit(limit)
    ).mappings()
    return cast("list[OutboxRow]", [dict(r) for r in rows])


def bindings_with_work(conn: Connection, now: datetime) -> list[str]:
    return list(
        conn.execute(
            select(outbox.c.binding_id).where(outbox.c.status == "pending", outbox.c.next_attempt_at <= now).distinct()
        ).scalars()
    )


def settle(conn: Connection, binding_id: str, event_id: str, pushed_version: int) -> None:
    """The checkpoint: rows asking for this version or older are done (a row bumped since stays)."""
    conn.execute(
        update(outbox)
        .where(
            outbox.c.binding_id == binding_id,
            outbox.c.event_id == event_id,
            outbox.c.status == "pending",
            outbox.c.version <= pushed_version,
        )
        .values(status="done", last_error=None, updated_at=utcnow())
    )


def hold(conn: Connection, binding_id: str, event_id: str) -> None:
    conn.execute(
        update(outbox)
        .where(
            outbox.c.binding_id == binding_id,
            outbox.c.event_id == event_id,
            outbox.c.status == "pending",
        )
        .values(status="held", updated_at=utcnow())
    )


def release(conn: Connection, binding_id: str, event_id: str, *, drop: bool) -> None:
    """After a conflict is resolved: held rows go back to the queue, or are dropped (remote kept)."""
    conn.execute(
        update(outbox)
        .where(
            outbox.c.binding_id == binding_id,
            outbox.c.event_id == event_id,
            outbox.c.status == "held",
        )
        .values(status="done" if drop else "pending", updated_at=utcnow())
    )


def retry_later(conn: Connection, row_id: int, when: datetime, error: str) -> None:
    conn.execute(
        update(outbox)
        .where(outbox.c.id == row_id)
        .values(attempts=outbox.c.attempts + 1, next_attempt_at=when, last_error=error, updated_at=utcnow())
    )


def fail(conn: Connection, row_id: int, error: str) -> None:
    conn.execute(
        update(outbox).where(outbox.c.id == row_id).values(status="failed", last_error=error, updated_at=utcnow())
    )


def backlog(conn: Connection, binding_id: str | None = None) -> int:
    query = select(func.count()).select_from(outbox).where(outbox.c.status.in_(("pending", "held")))
    if binding_id:
        query = query.where(outbox.c.binding_id == binding_id)
    return int(conn.execute(query).scalar_one())


def sync_states(conn: Connection, events: Iterable[EventRow]) -> dict[str, list[EventSyncState]]:
    """event id -> [{binding_id, state}] for every push or pull binding of its calendar, where state is
    synced (agreed with the binding), pending (queued), conflict (waiting for a decision) or error."""
    rows = list(events)
    if not rows:
        return {}
    ids = [r["id"] for r in rows]
    calendars = {r["calendar_id"] for r in rows}
    per_calendar: dict[str, list[tuple[str, str]]] = {}
    for b in conn.execute(
        select(bindings.c.id, bindings.c.calendar_id, bindings.c.direction).where(bindings.c.calendar_id.in_(calendars))
    ):
        per_calendar.setdefault(b.calendar_id, []).append((b.id, b.direction))
    links: dict[tuple[str, str], int] = {}
    queued: dict[tuple[str, str], SyncState] = {}
    conflicted: set[tuple[str, str]] = set()
    for chunk in chunks(ids):
        for link in conn.execute(
            select(event_links.c.event_id, event_links.c.binding_id, event_links.c.base_version).where(
                event_links.c.event_id.in_(chunk)
            )
        ):
            links[(link.event_id, link.binding_id)] = link.base_version
        for row in conn.execute(
            select(outbox.c.event_id, outbox.c.binding_id, outbox.c.status, outbox.c.attempts).where(
                outbox.c.event_id.in_(chunk), outbox.c.status.in_(("pending", "held", "failed"))
            )
        ):
            outbox_state: SyncState = "error" if row.status == "failed" or row.attempts > 0 else "pending"
            queued[(row.event_id, row.binding_id)] = outbox_state
        conflicted.update(
            (e, b)
            for e, b in conn.execute(
                select(conflicts.c.event_id, conflicts.c.binding_id).where(
                    and_(conflicts.c.event_id.in_(chunk), conflicts.c.status == "open")
                )
            )
        )
    out: dict[str, list[EventSyncState]] = {}
    for r in rows:
        states: list[EventSyncState] = []
        for binding_id, direction in per_calendar.get(r["calendar_id"], []):
            key = (r["id"], binding_id)
            state: SyncState
            if key in conflicted:
                state = "conflict"
            elif key in queued:
                state = queued[key]
            elif key in links and (links[key] == r["version"] or direction == "pull"):
                state = "synced"
            elif direction == "pull":
                state = "synced" if key in links else "local-only"
            else:
                state = "pending"
            states.append({"binding_id": binding_id, "state": state})
        out[r["id"]] = states
    return out


def mark_create_sent(conn: Connection, row_id: int) -> None:
    """Recorded before a create goes out: its answer may be lost (a killed worker, a dropped reply)."""
    conn.execute(update(outbox).where(outbox.c.id == row_id).values(create_sent=True))
