"""Plain typed values shared by the engine, the store and the providers. No I/O here."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from functools import lru_cache
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any

import orjson

from calsync.jsontext import canonical_dumps

# (defined in calsync.statuses with the other closed sets; still importable from here)
from calsync.statuses import CONFLICT_POLICIES as CONFLICT_POLICIES
from calsync.statuses import DIRECTIONS as DIRECTIONS
from calsync.statuses import AccountState
from calsync.statuses import ConflictPolicy as ConflictPolicy
from calsync.statuses import Direction as Direction

EVENT_STATUSES: tuple[str, ...] = ("confirmed", "tentative", "cancelled")
LOCAL_SOURCE = "local"


def utcnow() -> datetime:
    return datetime.now(UTC)


def canonical_instant(value: datetime) -> str:
    """One spelling per instant (UTC, seconds), so equal times compare equal as strings."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: an offset or time zone is required")
    return value.astimezone(UTC).replace(tzinfo=None, microsecond=0).isoformat() + "Z"  # year always 4 digits


def parse_instant(text: str) -> datetime:
    """Parse RFC 3339 (with offset or Z) into an aware datetime."""
    # (3.11's fromisoformat reads a Z itself, but in odd places too: replacing it keeps malformed text rejected)
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))  # noqa: FURB162
    if value.tzinfo is None:
        raise ValueError(f"time {text!r} has no offset")
    return value


@lru_cache(maxsize=16384)
def canonical_time(text: str, all_day: bool) -> str:
    """Canonical form of an event boundary: YYYY-MM-DD for all-day, UTC RFC 3339 otherwise.

    Remembered (a pure function of its text): an initial sync asks for each event's two times twice,
    mapping and storing them, and meetings share times; an answer remembered costs a quarter of
    checking the text again. Room for two pages of 2,500 events' times (what is mapped runs a page
    ahead of what is stored), a few MB. (What it refuses is not remembered: it raises every time.)"""
    if all_day:
        return date.fromisoformat(text[:10]).isoformat()
    if _canonical_utc(text) is not None:  # already canonical (what providers hand over): checked, not rebuilt
        datetime.fromisoformat(text)  # (its values: a 13th month raises, as the long way does)
        return text
    return canonical_instant(parse_instant(text))


# the canonical spelling of an instant (ASCII digits: \d would take any script's). An initial sync
# checks every event's two times twice (mapping them, storing them): matching the shape and parsing
# once costs half of what parsing, writing back and comparing did
_canonical_utc = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z").fullmatch


def range_key(text: str) -> str:
    """Sortable UTC key of a canonical boundary (all-day dates count from 00:00 UTC)."""
    return f"{text}T00:00:00Z" if len(text) == 10 else text


@dataclass
class Attendee:
    email: str
    name: str | None = None
    response: str = "needsAction"
    optional: bool = False
    organizer: bool = False


@dataclass
class EventData:
    """The provider-neutral content of one event (what the three-way decision compares)."""

    title: str = ""
    start: str = ""
    end: str = ""
    all_day: bool = False
    time_zone: str | None = None
    description: str | None = None
    location: str | None = None
    status: str = "confirmed"
    recurrence: list[str] | None = None
    original_start: str | None = None
    attendees: list[Attendee] = field(default_factory=list)
    conference: dict[str, Any] | None = None
    ical_uid: str | None = None
    sequence: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A plain dict (shallow: nested provider dicts are shared, not copied; asdict is 20x slower)."""
        body = {name: getattr(self, name) for name in _EVENT_FIELDS}
        body["attendees"] = [dict(a.__dict__) for a in self.attendees]
        return body

    def snapshot(self) -> dict[str, Any]:
        """to_json() without `extra`: a link's base is kept for a person to compare in a conflict, and
        the provider's raw copy (a whole iCalendar object for CalDAV) would double every row's size."""
        body = self.to_json()
        del body["extra"]
        return body

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EventData:
        values = dict(data)
        values["attendees"] = [Attendee(**a) for a in values.get("attendees") or []]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})

    def content_hash(self) -> str:
        """Hash of the fields a person edits; equal hashes mean 'same content' in the three-way rule.

        `sequence`, `ical_uid` and `extra` are provider bookkeeping, so they are left out. The text
        hashed is canonical_dumps of the other fields by name (sorted keys, compact), written here a
        field at a time: the sorting encoder over the whole dict was two thirds of the hash's cost,
        and an initial sync hashes every event (tests/test_page_cost.py holds it to the definition).
        Where orjson's text is byte for byte the same, orjson writes it, in a third of the time.
        """
        fast = _hashed_text_by_orjson(self)
        if fast is not None:
            return hashlib.sha256(fast).hexdigest()
        text = (
            f'{{"all_day":{_json(self.all_day)},"attendees":{_attendees_json(self.attendees)},'
            f'"conference":{_json(self.conference)},"description":{_json(self.description)},'
            f'"end":{_json(self.end)},"location":{_json(self.location)},'
            f'"original_start":{_json(self.original_start)},"recurrence":{_json(self.recurrence)},'
            f'"start":{_json(self.start)},"status":{_json(self.status)},'
            f'"time_zone":{_json(self.time_zone)},"title":{_json(self.title)}}}'
        )
        return hashlib.sha256(text.encode()).hexdigest()


def _hashed_text_by_orjson(data: EventData) -> bytes | None:
    """The content hash's text by orjson (sorted keys, compact: canonical_dumps' form), or None where
    orjson's could differ from it: a value that is not text, a boolean, an integer or null (orjson
    spells some floats otherwise), text beyond ASCII (orjson writes UTF-8 where the definition writes
    \\u escapes) or holding DEL (which orjson leaves as it is), or what orjson refuses (a lone
    surrogate, an integer beyond 64 bits, a key that is no text)."""
    conference, recurrence = data.conference, data.recurrence
    people = [a.__dict__ for a in data.attendees]
    leaves: list[Any] = [data.title, data.start, data.end, data.all_day, data.time_zone, data.description]
    leaves += (data.location, data.status, data.original_start)
    if recurrence is not None:
        if type(recurrence) is not list:
            return None
        leaves += recurrence
    if conference is not None:
        if type(conference) is not dict:
            return None
        leaves += conference.values()
    for person in people:
        leaves += person.values()
    if not _PLAIN_TYPES.issuperset(map(type, leaves)):
        return None
    body = {
        "all_day": data.all_day,
        "attendees": people,
        "conference": conference,
        "description": data.description,
        "end": data.end,
        "location": data.location,
        "original_start": data.original_start,
        "recurrence": recurrence,
        "start": data.start,
        "status": data.status,
        "time_zone": data.time_zone,
        "title": data.title,
    }
    try:
        text = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return None
    return text if text.isascii() and b"\x7f" not in text else None


_PLAIN_TYPES = frozenset({str, bool, int, type(None)})


def _json(value: Any) -> str:
    """canonical_dumps(value), with its commonest values (text, None, booleans) written directly."""
    if type(value) is str:
        return _json_string(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    return canonical_dumps(value)


def _attendees_json(attendees: list[Attendee]) -> str:
    """canonical_dumps of the attendees' fields (keys in sorted order), written a field at a time:
    half the time of the sorting encoder. An attendee given fields of its own beyond the five (none
    is) goes the long way, so the text stays the definition's."""
    if any(len(a.__dict__) != 5 for a in attendees):
        return canonical_dumps([a.__dict__ for a in attendees])
    people = ",".join(
        [
            f'{{"email":{_json(a.email)},"name":{_json(a.name)},"optional":{_json(a.optional)},'
            f'"organizer":{_json(a.organizer)},"response":{_json(a.response)}}}'
            for a in attendees
        ]
    )
    return f"[{people}]"


_EVENT_FIELDS = tuple(f.name for f in fields(EventData))


@dataclass
class RemoteEvent:
    """An event as a provider lists it: its id there, its ETag and its content."""

    remote_id: str
    etag: str
    data: EventData
    series_remote_id: str | None = None
    updated: str | None = None
    # the id calsync gave the event when it created it, where the provider keeps one beside its own
    # id (Graph's transactionId); None where the remote id itself is ours (Google, CalDAV)
    client_id: str | None = None
    # a series whose provider sees its deleted occurrences only inside a time window (Graph derives
    # EXDATEs from the occurrences its window lists): that window. Outside it the EXDATEs are
    # unknown, not absent, and the engine keeps the last agreed ones there. None: all are known.
    exdates_known: tuple[datetime, datetime] | None = None

    @property
    def content_hash(self) -> str:
        """Computed once: a page applies it to the event, the link base and the three-way test.
        (Kept by hand: 3.11's cached_property takes a lock on every first look, which cost an initial
        sync more than the two later looks this way do.)"""
        known: str | None = self.__dict__.get("_content_hash")
        if known is None:
            known = self.__dict__["_content_hash"] = self.data.content_hash()
        return known


@dataclass
class RemoteDeletion:
    """A provider saying an event is gone; only the id is guaranteed. `proof` says what showed it
    (the request and its answer); the engine records it on the tombstone it makes."""

    remote_id: str
    proof: str = ""


RemoteChange = RemoteEvent | RemoteDeletion


@dataclass
class ChangePage:
    """One page of a change listing. `sync_token` is set on the last page only."""

    items: list[RemoteChange]
    full: bool
    last: bool
    sync_token: str | None = None


@dataclass
class RemoteCalendar:
    remote_id: str
    name: str
    time_zone: str | None = None
    color: str | None = None
    primary: bool = False
    access_role: str | None = None


@dataclass
class Account:
    id: str
    provider: str
    name: str
    base_url: str | None
    credentials: dict[str, Any] = field(repr=False)  # secrets: never in a log line or a traceback
    state: AccountState = "ok"
    last_error: str | None = None  # why the account stopped (its state), in the provider's words
