"""Local changes to events (REST API, CLI, library): validate, write the event with its next version,
and queue it for every push-enabled binding, all in one transaction (the transactional outbox).
Nothing here calls a provider: pushing is the outbox worker's job."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, Engine

from calsync.model import LOCAL_SOURCE, Attendee, EventData, canonical_time, utcnow
from calsync.providers.canonical import canonical_text, canonical_zone
from calsync.statuses import ConflictKind
from calsync.store import accounts as account_store
from calsync.store import conflicts as conflict_store
from calsync.store import events as event_store
from calsync.store import links as link_store
from calsync.store import outbox as outbox_store
from calsync.store.common import NotFound, new_id
from calsync.store.conferences import ChangedEvent, enqueue_for_changed_events
from calsync.store.journal import LIBRARY, Author
from calsync.store.rows import EventWithLinks

EDITABLE = ("title", "start", "end", "all_day", "time_zone", "description", "location", "attendees", "status")
MAX_TEXT = {"title": 1024, "description": 8192, "location": 1024}
MIN_YEAR, MAX_YEAR = 1900, 2999


class InvalidEvent(ValueError):
    """Bad input, naming the field at fault (the API answers 422 with it)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class StaleVersion(Exception):
    """The caller's If-Match names an older version than the event has (the API answers 412)."""

    def __init__(self, current: int) -> None:
        super().__init__(f"the event is at version {current}")
        self.current = current


class NoConference(Exception):
    """The event carries no conference to remove (the API answers 409)."""

    def __init__(self, event_id: str) -> None:
        super().__init__("the event has no conference")
        self.event_id = event_id


@dataclass
class LocalChange:
    event_id: str
    version: int
    queued: int  # outbox rows written


def create_event(engine: Engine, calendar_id: str, fields: dict[str, Any], *, author: Author = LIBRARY) -> LocalChange:
    """A new local event, queued for every push-enabled binding of its calendar. `author`: who asked
    (the event's history names them)."""
    data = validated(EventData(), fields, creating=True)
    now = utcnow()
    event_id = new_id()
    with engine.begin() as conn:
        if not account_store.calendar_exists(conn, calendar_id):
            raise InvalidEvent("calendar_id", f"no calendar with id {calendar_id!r}")
        event_store.insert_events(
            conn,
            [
                {
                    "id": event_id,
                    "calendar_id": calendar_id,
                    "source": LOCAL_SOURCE,
                    "created_at": now,
                    **event_store.event_columns(data),
                    "version": 1,
                    "updated_at_source": LOCAL_SOURCE,
                    "updated_at": now,
                    "deleted": False,
                    "deleted_at": None,
                    "deleted_by": None,
                    "deletion_proof": None,
                    "recurring_event_id": None,
                }
            ],
            author=author,
        )
        queued = outbox_store.enqueue(conn, calendar_id, [(event_id, 1)])
    return LocalChange(event_id, 1, queued)


def update_event(
    engine: Engine, event_id: str, changes: dict[str, Any], if_version: int | None, *, author: Author = LIBRARY
) -> LocalChange:
    """Change some fields of a live event; `if_version` guards against overwriting a newer version."""
    with engine.begin() as conn:
        row = _live_row(conn, event_id, if_version)
        data = validated(event_store.row_to_data(row), changes, creating=False)
        return write_local_version(conn, row, data, author=author)


def write_local_version(
    conn: Connection,
    row: EventWithLinks,
    data: EventData,
    *,
    author: Author,
    note: list[str] | None = None,
    undelete: bool = False,
) -> LocalChange:
    """The event's next version is `data`, written in the caller's transaction as a local edit: the
    row (guarded on its version: StaleVersion when written meanwhile), the outbox rows for every push
    binding, the conflicts it settles and the conference work. update_event and history.restore use it;
    `note` goes into the journal row's fields; `undelete`: a deleted event is live again (each binding
    whose copy went makes it again, as for a copy deleted there)."""
    event_id = row["id"]
    version = row["version"] + 1
    saved = event_store.save_local_event(
        conn, event_id, data, version, author=author, note=note or (), undelete=undelete
    )
    if not saved:
        raise StaleVersion(_current_version(conn, event_id))
    queued = outbox_store.enqueue(conn, row["calendar_id"], [(event_id, version)])
    _settle_agreed_conflicts(conn, event_id, version, data)
    _conference_work(conn, event_id, data)
    return LocalChange(event_id, version, queued)


def delete_event(
    engine: Engine, event_id: str, if_version: int | None, *, via: str = "the library", author: Author = LIBRARY
) -> LocalChange:
    """Delete locally (a tombstone, so the delete can be pushed and the conference removed). `via`
    names the surface it was asked through (the API, the CLI...): the tombstone's proof."""
    proof = f"deleted locally through {via}"
    with engine.begin() as conn:
        row = _live_row(conn, event_id, if_version)
        version = row["version"] + 1
        if not event_store.tombstone_local_event(conn, event_id, version, proof, author=author):
            raise StaleVersion(_current_version(conn, event_id))
        doomed = [event_id, *event_store.live_exception_ids(conn, [event_id])]
        event_store.tombstone_events(
            conn, dict.fromkeys(doomed[1:], f"its series {event_id} was {proof}"), LOCAL_SOURCE
        )
        # the series first, then its exceptions: those held inside it on a side go with it there, but
        # one a side holds as an event of its own (a stand-in, in Outlook) is deleted there on its own
        queued = outbox_store.enqueue(conn, row["calendar_id"], [(event_id, version), *((e, 0) for e in doomed[1:])])
        _settle_agreed_conflicts(conn, event_id, version, None)
        enqueue_for_changed_events(conn, [], doomed)
    return LocalChange(event_id, version, queued)


def remove_conference(
    engine: Engine, event_id: str, if_version: int | None, *, author: Author = LIBRARY
) -> LocalChange:
    """Take the conference off the event: a local change pushed to every binding; a meeting calsync
    made is deleted by the conference worker. NoConference when the event carries none."""
    with engine.begin() as conn:
        row = _live_row(conn, event_id, if_version)
        if not row["conference"]:
            raise NoConference(event_id)
        event_store.set_local_conference(conn, event_id, None, author=author)
        version = _current_version(conn, event_id)
        queued = outbox_store.enqueue(conn, row["calendar_id"], [(event_id, version)])
        enqueue_for_changed_events(conn, [ChangedEvent(event_id, None, row["recurring_event_id"])], [])
    return LocalChange(event_id, version, queued)


def queue_unagreed(engine: Engine, event_id: str) -> int:
    """The event's current version queued for every push binding that has not agreed on it (a
    conference made before the event's first push is written on the local event only)."""
    with engine.begin() as conn:
        row = _live_row(conn, event_id, None)
        agreed = {link["binding_id"]: link["base_version"] for link in row["links"]}
        behind = [b for b in outbox_store.push_bindings(conn, row["calendar_id"]) if agreed.get(b, 0) < row["version"]]
        if not behind:
            return 0
        return outbox_store.enqueue(conn, row["calendar_id"], [(event_id, row["version"])], bindings_to=behind)


def _settle_agreed_conflicts(conn: Connection, event_id: str, version: int, data: EventData | None) -> None:
    """A local change that makes the event what the remote side of an open conflict already is (both
    deleted, or the same content) settles that conflict: nothing is left to ask. The link agrees
    with this version, and the held pushes for that binding have nothing to do. Otherwise the
    conflict's local side (and kind) become the newest. `data` None: deleted."""
    for conflict in conflict_store.open_conflicts_of_event(conn, event_id):
        binding_id, remote = conflict["binding_id"], conflict["remote"]
        if data is None and remote is None:
            link_store.mark_link_deleted(conn, event_id, binding_id, version)
        elif (
            data is not None
            and remote is not None
            and EventData.from_json(remote).content_hash() == data.content_hash()
        ):
            link = link_store.link_of(conn, event_id, binding_id)
            assert link is not None  # a conflict is about a linked copy
            link_store.agree_link(
                conn, event_id, binding_id, link["remote_id"], conflict["remote_etag"], version, data, create=False
            )
        else:  # still different: the conflict offers the newest local side too
            kind: ConflictKind = "local-delete" if data is None else "remote-delete" if remote is None else "edit-edit"
            conflict_store.refresh_conflict_local(conn, conflict["id"], None if data is None else data.to_json(), kind)
            continue
        conflict_store.close_conflict(conn, conflict["id"], "auto:agreed-locally")
        outbox_store.release(conn, binding_id, event_id, drop=True)


def _live_row(conn: Connection, event_id: str, if_version: int | None) -> EventWithLinks:
    rows = event_store.get_events(conn, [event_id])
    if not rows or rows[0]["deleted"]:
        raise NotFound(f"no event with id {event_id!r}")
    row = rows[0]
    if if_version is not None and if_version != row["version"]:
        raise StaleVersion(row["version"])
    return row


def _current_version(conn: Connection, event_id: str) -> int:
    return int(event_store.get_events(conn, [event_id])[0]["version"])


def _conference_work(conn: Connection, event_id: str, data: EventData) -> None:
    enqueue_for_changed_events(conn, [ChangedEvent(event_id, data.conference)], [])


# --- validation ---------------------------------------------------------------------------


def validated(base: EventData, fields: dict[str, Any], *, creating: bool) -> EventData:
    """`base` with `fields` applied, or InvalidEvent naming the first bad field."""
    unknown = set(fields) - set(EDITABLE) - {"calendar_id"}
    if unknown:
        name = min(unknown)
        raise InvalidEvent(name, "is not a field that can be set")
    if creating:
        for required in ("title", "start", "end"):
            if fields.get(required) in (None, ""):
                raise InvalidEvent(required, "is required")
    data = EventData(**{**base.to_json(), "attendees": list(base.attendees)})
    for name, limit in MAX_TEXT.items():
        if name in fields:
            value = fields[name]
            if value is not None and not isinstance(value, str):
                raise InvalidEvent(name, "must be a string")
            if value is not None and len(value) > limit:
                raise InvalidEvent(name, f"must be at most {limit} characters")
            at = next((i for i, c in enumerate(value or "") if c < " " and c not in "\t\n"), None)
            if at is not None:  # C0 controls but tab and newline: a terminal acts on them (ESC: cursor, screen)
                raise InvalidEvent(name, f"must not contain control characters ({str(value)[at]!r} at {at})")
            # an empty description or location is none, as every provider reads it back
            setattr(data, name, (value or "") if name == "title" else canonical_text(value))
    if "status" in fields:
        if fields["status"] not in ("confirmed", "tentative"):
            raise InvalidEvent("status", "must be confirmed or tentative (delete the event to cancel it)")
        data.status = fields["status"]
    if "time_zone" in fields:
        data.time_zone = canonical_zone(_zone(fields["time_zone"]))  # UTC by any name is no zone
    if "all_day" in fields:
        if not isinstance(fields["all_day"], bool):
            raise InvalidEvent("all_day", "must be true or false")
        data.all_day = fields["all_day"]
    if "attendees" in fields:
        data.attendees = _attendees(fields["attendees"])
    for name in ("start", "end"):
        if name in fields:
            setattr(data, name, _time(name, fields[name], data.all_day))
        elif data.all_day != base.all_day:
            setattr(data, name, _time(name, getattr(data, name), data.all_day))
    if data.end <= data.start:
        raise InvalidEvent("end", "must be after start")
    return data


def _time(name: str, value: Any, all_day: bool) -> str:
    if not isinstance(value, str):
        raise InvalidEvent(name, "must be a string (RFC 3339 date-time, or YYYY-MM-DD for all-day events)")
    kind = "date" if all_day else "RFC 3339 date-time"
    try:
        # (3.11's fromisoformat reads a Z itself, but in odd places too: replacing it keeps malformed text out)
        parsed = date.fromisoformat(value[:10]) if all_day else datetime.fromisoformat(value.replace("Z", "+00:00"))  # noqa: FURB162
    except ValueError as exc:
        raise InvalidEvent(name, f"is not a valid {kind}: {value[:64]!r}") from exc
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise InvalidEvent(name, f"must lie between the years {MIN_YEAR} and {MAX_YEAR}")
    if isinstance(parsed, datetime) and parsed.tzinfo is None:
        raise InvalidEvent(name, "needs an offset or Z (e.g. 2026-12-01T09:00:00Z)")
    try:
        return parsed.isoformat() if all_day else canonical_time(value, False)
    except (ValueError, OverflowError) as exc:
        raise InvalidEvent(name, f"is not a valid {kind}: {value[:64]!r}") from exc


def _zone(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 64:
        raise InvalidEvent("time_zone", "must be an IANA time zone name such as Europe/Berlin")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: a folder such as "America"
        raise InvalidEvent("time_zone", f"unknown IANA time zone {value!r}") from exc
    return value


def _attendees(value: Any) -> list[Attendee]:
    if not isinstance(value, list):
        raise InvalidEvent("attendees", "must be a list")
    out: list[Attendee] = []
    for item in value:
        entry = {"email": item} if isinstance(item, str) else item
        if not isinstance(entry, dict) or not isinstance(entry.get("email"), str) or "@" not in entry["email"]:
            raise InvalidEvent("attendees", f"each attendee needs an e-mail address, got {item!r}")
        out.append(
            Attendee(
                email=entry["email"],
                name=entry.get("name"),
                optional=bool(entry.get("optional")),
                response=entry.get("response", "needsAction"),
            )
        )
    return out
