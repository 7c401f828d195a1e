"""An event's history (its change journal rows as entries a person reads) and restoring an old version.

History is store/journal.py's rows of one event: who made each change (`side`: "local" or the binding
id; `author`: "api key <name>", "web user <name>", "cli", "google binding <id>", ...), when, the
provider's ETag of a copy a binding brought, and what changed (`changes`: {field: {"from", "to"}}).
It keeps what the journal keeps: the journal's retention is the history's.

Restoring writes the content an old version had as the event's next version, exactly as a local edit
is written (local.write_local_version: the row, the outbox rows for every push binding, the conflicts
it settles, the conference work, one transaction), so it is pushed to every binding like any edit.
The journal row says `restored_from:<version>` among its fields. Restored are the fields a person
edits and the recurrence rule; the conference stays as it is now (a meeting's lifecycle is the
conference worker's), and so does an exception's original start (what it is an exception of).

A deleted event restored comes back: the same write with the tombstone lifted (journalled as
`undeleted`), so each binding whose copy was deleted makes it again (outbound's create over a copy
that is gone: Google writes over its cancelled copy, Graph makes a new one, CalDAV puts the resource
again). It comes back without its conference (the meeting went with the deletion; add one again).
A deleted series or occurrence of one is refused (RestoreRefused): its exceptions and the series'
EXDATEs were changed with its deletion, and bringing back the series alone would not be that version."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Engine

from calsync.engine import local
from calsync.model import EventData
from calsync.store import events as event_store
from calsync.store import journal
from calsync.store.common import NotFound

# what a restore takes back: the history's fields but the conference (the meeting's lifecycle is the
# conference worker's) and an exception's original start (what it is an exception of)
RESTORED_FIELDS = tuple(name for name in journal.HISTORY_FIELDS if name not in ("conference", "original_start"))
RESTORED_FROM = "restored_from:"
CONFLICT_KINDS = ("conflict-opened", "conflict-resolved")


class VersionNotKept(Exception):
    """The version asked for is not in the event's kept history (never was, or retention removed it)."""

    def __init__(self, event_id: str, version: int, kept: list[int]) -> None:
        shown = f"{kept[0]} to {kept[-1]}" if kept else "none"
        super().__init__(
            f"version {version} of event {event_id} is not in its kept history (versions kept: {shown}; "
            "older ones are removed by the journal's retention)"
        )
        self.version = version
        self.kept = kept


class RestoreRefused(Exception):
    """The event cannot take an old version (a deleted series or occurrence of one)."""


@dataclass(frozen=True)
class Restored:
    event_id: str
    version: int  # the event's version now (the new one, or the current one when nothing changed)
    changed: bool  # False: the content asked for is the current content (nothing written)
    queued: int = 0


@dataclass(frozen=True)
class HistoryPage:
    entries: list[dict[str, Any]]
    next_cursor: int | None  # the journal row id to go on before (older entries), None on the last page


def entries(engine: Engine, event_id: str) -> list[dict[str, Any]]:
    """Every kept history entry of the event, oldest first. NotFound for no such event."""
    with engine.begin() as conn:
        if not event_store.get_events(conn, [event_id]):
            raise NotFound(f"no event with id {event_id!r}")
        rows = journal.history(conn, event_id)
    return [_entry(row) for row in rows]


def page(engine: Engine, event_id: str, *, before: int | None = None, limit: int = 100) -> HistoryPage:
    """Entries newest first, `limit` at a time; `before`: the cursor of the previous page."""
    rows = entries(engine, event_id)
    rows.reverse()
    if before is not None:
        rows = [e for e in rows if e["id"] < before]
    shown = rows[:limit]
    more = len(rows) > limit
    return HistoryPage(shown, shown[-1]["id"] if more and shown else None)


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    fields = list(row["fields"] or [])
    restored = [f for f in fields if f.startswith(RESTORED_FROM)]
    diff = cast("dict[str, list[Any]]", row["diff"] or {})
    created = row["created_at"]
    return {
        "id": int(row["id"]),
        "event_id": row["event_id"],
        "version": int(row["version"]),
        "kind": row["kind"],
        "side": row["side"],
        "author": row["author"],
        "at": created.isoformat().replace("+00:00", "Z") if created is not None else None,
        "remote_etag": row["remote_etag"],
        "fields": [f for f in fields if not f.startswith(RESTORED_FROM)],
        "changes": {name: {"from": old, "to": new} for name, (old, new) in diff.items()},
        "conflict_id": row["conflict_id"],
        "restored_from": int(restored[0][len(RESTORED_FROM) :]) if restored else None,
    }


def kept_versions(engine: Engine, event_id: str) -> list[int]:
    """The versions a restore may name: those of the kept content changes."""
    return sorted({e["version"] for e in entries(engine, event_id) if e["kind"] not in CONFLICT_KINDS})


def restore(
    engine: Engine, event_id: str, version: int, *, author: journal.Author, if_version: int | None = None
) -> Restored:
    """Make the event's next version equal to `version` (its RESTORED_FIELDS), pushed like any local
    edit; a deleted event comes back. The current content asked for again changes nothing
    (Restored.changed False). NotFound, local.StaleVersion (`if_version` is not the current one),
    RestoreRefused (a deleted series or occurrence), VersionNotKept."""
    with engine.begin() as conn:
        rows = event_store.get_events(conn, [event_id])
        if not rows:
            raise NotFound(f"no event with id {event_id!r}")
        row = rows[0]
        if if_version is not None and if_version != row["version"]:
            raise local.StaleVersion(row["version"])
        deleted = bool(row["deleted"])
        if deleted and (row["recurrence"] or row["recurring_event_id"]):
            raise RestoreRefused(
                f"event {event_id} is a deleted recurring series or occurrence (version {row['version']}): "
                "it is not restored, since its exceptions went with it; create it again instead"
            )
        content = journal.content_at(conn, event_id, version)
        if content is None:
            kept = sorted(
                {int(e["version"]) for e in journal.history(conn, event_id) if e["kind"] not in CONFLICT_KINDS}
            )
            raise VersionNotKept(event_id, version, kept)
        current = event_store.row_to_data(row)
        now = current.to_json()
        wanted = {name: content[name] for name in RESTORED_FIELDS}
        if not deleted and all(now[name] == wanted[name] for name in RESTORED_FIELDS):
            return Restored(event_id, int(row["version"]), changed=False)
        data = EventData.from_json({**now, **wanted})
        if deleted:
            data.conference = None  # its meeting was deleted with it
        note = [f"{RESTORED_FROM}{version}"]
        change = local.write_local_version(conn, row, data, author=author, note=note, undelete=deleted)
    return Restored(event_id, change.version, changed=True, queued=change.queued)
