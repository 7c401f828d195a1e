"""A series and its exceptions kept consistent with each other locally.

Why: an exception that is live at a start its series excludes (an EXDATE) is read by every CalDAV
client, and by calsync, as deleted; the EXDATE a deletion left must go when the occurrence comes
back (restored in Google, or kept over its deletion in a conflict)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from sqlalchemy import Connection

from calsync.series_exdates import excluded_starts, without_starts
from calsync.store import events as event_store
from calsync.store import outbox as outbox_store


def include_restored(conn: Connection, calendar_id: str, live: Iterable[tuple[str, str]], source: str) -> int:
    """`live`: (series id, original start) of occurrences live again. Each series that still excludes
    such a start stops excluding it, at its next version, as a change from `source`, queued for every
    push binding of the calendar (the side it came from too: its copy may carry the EXDATE). Returns
    how many series changed."""
    restored: dict[str, set[str]] = {}
    for series_id, original_start in live:
        restored.setdefault(series_id, set()).add(original_start)
    if not restored:
        return 0
    changed: list[tuple[str, int]] = []
    for row in event_store.get_events(conn, list(restored)):
        data = event_store.row_to_data(row)
        if row["deleted"] or not data.recurrence:
            continue
        starts = restored[row["id"]] & excluded_starts(data.recurrence, data.time_zone)
        if not starts:
            continue
        data = replace(data, recurrence=without_starts(data.recurrence, data.time_zone, starts))
        version = row["version"] + 1
        event_store.save_event_from(conn, row["id"], data, version, source)
        changed.append((row["id"], version))
    if changed:
        outbox_store.enqueue(conn, calendar_id, changed)
    return len(changed)
