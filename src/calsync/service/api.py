"""The REST API (`/api/v1`): sync health, calendars, events and conflicts.

Every write goes through the engine's local write path (engine/local.py), so the API, the CLI and
the library validate, version and queue changes the same way. This module only speaks HTTP:
status codes, ETags and preconditions, cursors, and turning engine errors into 4xx answers.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Path, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)
from sqlalchemy import Connection, Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from calsync.engine import local
from calsync.engine.conflicts import ConflictChanged, ConflictResolved, resolve_conflict
from calsync.engine.field_merge import merge
from calsync.engine.health import status_snapshot
from calsync.model import EventData, canonical_time, range_key
from calsync.service.auth import CallerDep
from calsync.service.authors import AuthorDep
from calsync.service.binding_routes import binding_routes
from calsync.service.errors import API_ERRORS, ProblemOut
from calsync.store import accounts as account_store
from calsync.store import conflicts as conflict_store
from calsync.store import event_pages, users
from calsync.store import events as event_store
from calsync.store import outbox as outbox_store
from calsync.store.common import NotFound
from calsync.store.journal import LIBRARY, Author
from calsync.store.rows import ConflictRow, EventWithLinks
from calsync.views import event_json, jsonable

PREFIX = "/api/v1"
DEFAULT_LIMIT = 500
MAX_LIMIT = 2500
MAX_ATTENDEES = 1000

_ID = re.compile(r"[0-9a-f]{32}")  # store.common.new_id(): anything else cannot name a row, so it is a 404 at once
_RANGE_KEY = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_ETAG = re.compile(r'(?:W/)?"?(\d{1,18})-([0-9a-f]{8})"?')
_BOOKKEEPING = ("sequence", "extra", "ical_uid")  # provider fields a person does not edit (model.content_hash)
_ECHO_LIMIT = 200  # characters of a rejected input shown back in a 422
# C0 controls but tab, line feed and carriage return (descriptions come back from providers with CRLF lines)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_UNPARSED_BODY = "There was an error parsing the body"  # FastAPI's 400 for a body that is not even text


def is_row_id(value: str) -> bool:
    """Whether `value` can name a row at all (anything else is a 404 without a query)."""
    return _ID.fullmatch(value) is not None


# --- input types ------------------------------------------------------------------------------


def _plain_text(value: str) -> str:
    """Strings the stores can hold and a calendar can show: SQLite cannot encode lone surrogates,
    PostgreSQL rejects NUL, and other control characters break iCalendar lines and providers' forms."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    control = _CONTROL.search(value)
    if control:
        raise ValueError(f"must not contain control characters (found U+{ord(control.group()):04X})")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return value


Title = Annotated[str, Field(max_length=local.MAX_TEXT["title"]), AfterValidator(_plain_text)]
Description = Annotated[str, Field(max_length=local.MAX_TEXT["description"]), AfterValidator(_plain_text)]
Location = Annotated[str, Field(max_length=local.MAX_TEXT["location"]), AfterValidator(_plain_text)]
Boundary = Annotated[
    str,
    Field(
        max_length=64,
        description="RFC 3339 date-time with offset, or YYYY-MM-DD for all-day events",
        examples=["2026-12-01T09:00:00Z"],
    ),
    AfterValidator(_plain_text),
]
ZoneName = Annotated[
    str, Field(max_length=64, description="IANA time zone", examples=["Europe/Paris"]), AfterValidator(_plain_text)
]
Email = Annotated[str, Field(max_length=320, examples=["ada@example.com"]), AfterValidator(_plain_text)]
Name = Annotated[str, Field(max_length=1024), AfterValidator(_plain_text)]
IdText = Annotated[str, Field(max_length=64), AfterValidator(_plain_text)]
Status = Literal["confirmed", "tentative"]


class _Strict(BaseModel):
    """Unknown fields and type coercion ("yes" for true, 1 for "1") are errors, not guesses."""

    model_config = ConfigDict(extra="forbid", strict=True)


class AttendeeIn(_Strict):
    email: Email
    name: Name | None = None
    optional: bool = False
    response: Literal["needsAction", "accepted", "declined", "tentative"] = "needsAction"


def _attendee_kind(value: Any) -> str | None:
    """Which form an attendee is given in, so a 422 names the fields of that form only."""
    return "email" if isinstance(value, str) else "attendee" if isinstance(value, dict | AttendeeIn) else None


# a plain e-mail string is an attendee with defaults (a 422 about it names ["attendees", i, "email"])
AttendeeInput = Annotated[
    Annotated[AttendeeIn, Tag("attendee")] | Annotated[Email, Tag("email")],
    Discriminator(
        _attendee_kind,
        custom_error_type="attendee",
        custom_error_message="an attendee is an e-mail address or an object with an email field",
    ),
]


def _not_null(value: Any) -> Any:
    """Absent means 'unchanged'; null would mean 'clear', which these fields cannot be."""
    if value is None:
        raise ValueError("may not be null (leave the field out to keep it unchanged)")
    return value


# the documented examples (a fuzzer starts from them: tests/test_fuzz_api.py serves a calendar with this id)
EXAMPLE_CALENDAR_ID = "c0ffee00c0ffee00c0ffee00c0ffee00"
_EXAMPLE_EVENT: dict[str, Any] = {
    "title": "Standup",
    "start": "2026-12-01T09:00:00Z",
    "end": "2026-12-01T09:30:00Z",
    "time_zone": "Europe/Paris",
    "location": "Room 1",
    "attendees": ["ada@example.com", {"email": "grace@example.com", "name": "Grace", "optional": True}],
}


class EventChanges(_Strict):
    """Some editable fields (PATCH, or a merged conflict resolution); absent ones stay as they are."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"title": "Standup (moved)", "start": "2026-12-01T10:00:00Z", "end": "2026-12-01T10:30:00Z"}]
        }
    )

    title: Title | None = None
    start: Boundary | None = None
    end: Boundary | None = None
    all_day: bool | None = None
    time_zone: ZoneName | None = None
    description: Description | None = None
    location: Location | None = None
    attendees: Annotated[list[AttendeeInput], Field(max_length=MAX_ATTENDEES)] | None = None
    status: Status | None = None

    _present = field_validator("title", "start", "end", "all_day", "attendees", "status", mode="before")(_not_null)

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class EventReplacement(_Strict):
    """All editable fields (PUT): an optional field left out is cleared to its default."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_EVENT]})

    title: Title
    start: Boundary
    end: Boundary
    all_day: bool = False
    time_zone: ZoneName | None = None
    description: Description | None = None
    location: Location | None = None
    attendees: Annotated[list[AttendeeInput], Field(max_length=MAX_ATTENDEES)] = Field(default_factory=list)
    status: Status = "confirmed"

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude={"calendar_id"})


class EventCreate(EventReplacement):
    model_config = ConfigDict(json_schema_extra={"examples": [{"calendar_id": EXAMPLE_CALENDAR_ID, **_EXAMPLE_EVENT}]})

    calendar_id: IdText


class ResolveRequest(_Strict):
    """Keep one side as it is, or give the merged event (exactly one of the two)."""

    keep: Literal["local", "remote"] | None = None
    merged: EventChanges | None = None
    remote_etag: str | None = Field(
        default=None,
        max_length=1024,
        description=(
            "the conflict's remote_etag as the caller saw it: when the remote side changed since (a later "
            "sync refreshed it), the resolution is refused with 409 and the conflict offers the newest side"
        ),
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ResolveRequest:
        if (self.keep is None) == (self.merged is None):
            raise ValueError('give exactly one of "keep" ("local" or "remote") and "merged"')
        return self


# --- output types (documentation; extra keys pass through so views.py stays the one shape) --------


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class LinkOut(_Open):
    binding_id: str
    remote_id: str
    etag: str | None
    base_version: int
    remote_deleted: bool


class SyncStateOut(_Open):
    binding_id: str
    state: str = Field(description="synced | pending | conflict | error | local-only")


class EventOut(_Open):
    id: str
    calendar_id: str
    title: str
    description: str | None
    location: str | None
    start: str
    end: str
    all_day: bool
    time_zone: str | None
    status: str
    recurrence: list[str] | None
    recurring_event_id: str | None
    original_start: str | None
    attendees: list[dict[str, Any]]
    conference: dict[str, Any] | None
    version: int
    source: str
    updated_at_source: str
    created_at: str | None
    updated_at: str | None
    deleted: bool
    links: list[LinkOut]
    sync: list[SyncStateOut]
    etag: str


class EventPageOut(BaseModel):
    events: list[EventOut]
    next_cursor: str | None = Field(description="pass back as `cursor` for the next page; null on the last")


class BindingOut(_Open):
    id: str
    direction: str
    remote_calendar_id: str
    account_id: str


class CalendarOut(_Open):
    id: str
    name: str
    color: str | None
    time_zone: str | None
    event_count: int
    bindings: list[BindingOut]


class CalendarListOut(BaseModel):
    calendars: list[CalendarOut]


class ConflictOut(_Open):
    id: str
    event_id: str
    binding_id: str
    status: str
    kind: str = Field(description="edit-edit | remote-delete | local-delete")
    base: dict[str, Any] | None
    local: dict[str, Any] | None = Field(description="null when the event was deleted locally")
    remote: dict[str, Any] | None = Field(
        description="null when the event was deleted remotely; always the newest remote state calsync has seen"
    )
    remote_etag: str | None = Field(
        default=None,
        description="ETag of that remote state (send it back when "
        "resolving, to refuse a decision made on an older one)",
    )
    remote_deletion_proof: str | None = Field(
        default=None, description="when the remote side is a deletion: what proved it"
    )
    differing_fields: list[str] = Field(
        description='fields where local and remote differ; ["deleted"] when one side is gone'
    )
    clashing_fields: list[str] = Field(
        default_factory=list,
        description="of an edit on both sides: the fields each changed differently since they last agreed "
        '(the merge policy\'s fields: "time", "title", ..., "attendee <email>", "response <email>"); '
        "what the merge policy could not settle",
    )
    resolution: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    resolved_at: str | None = None


class ConflictChangedOut(BaseModel):
    msg: str
    conflict: ConflictOut


class ConflictChangedProblemOut(BaseModel):
    detail: ConflictChangedOut


class ConflictListOut(BaseModel):
    conflicts: list[ConflictOut]


class StaleOut(BaseModel):
    msg: str
    etag: str = Field(description="the event's current ETag")
    version: int


class StaleProblemOut(BaseModel):
    detail: StaleOut


_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ProblemOut, "description": "No such event"}}
_GUARDED: dict[int | str, dict[str, Any]] = {
    **_NOT_FOUND,
    412: {
        "model": StaleProblemOut,
        "description": "If-Match names an older version; the current ETag is in the ETag header and the body",
    },
    428: {"model": ProblemOut, "description": "If-Match is missing"},
}


def _event_link(method: str, path: str = "/events/{event_id}", if_match: bool = False) -> dict[str, Any]:
    """An OpenAPI link from an answer carrying an event to an operation on it (clients and fuzzers follow it)."""
    pointer = (PREFIX + path).replace("~", "~0").replace("/", "~1")
    parameters = {"event_id": "$response.body#/id", **({"header.if-match": "$response.body#/etag"} if if_match else {})}
    return {"operationRef": f"#/paths/{pointer}/{method}", "parameters": parameters}


# where an event answered (created, read, changed) leads: reading it, changing it with its ETag, deleting it
EVENT_LINKS: dict[str, dict[str, Any]] = {
    "GetEvent": _event_link("get"),
    "PatchEvent": _event_link("patch", if_match=True),
    "ReplaceEvent": _event_link("put", if_match=True),
    "DeleteEvent": _event_link("delete", if_match=True),
    "AddConference": _event_link("post", "/events/{event_id}/conference"),
    "RemoveConference": _event_link("delete", "/events/{event_id}/conference", if_match=True),
    "EventHistory": _event_link("get", "/events/{event_id}/history"),
    "RestoreEvent": _event_link("post", "/events/{event_id}/restore", if_match=True),
}

# --- errors -------------------------------------------------------------------------------------


def _invalid(loc: tuple[str, ...], msg: str) -> HTTPException:
    """The shape of FastAPI's own validation errors, so clients parse one kind of 422."""
    return HTTPException(422, detail=[{"loc": list(loc), "msg": msg, "type": "value_error"}])


def printable(value: Any) -> Any:
    """A validation error made safe to send, since FastAPI's own 422 echoes the rejected input and
    would fail as a 500 on what JSON or UTF-8 cannot encode: lone surrogates, NaN and Infinity
    (Python's json reads them, Starlette will not write them). Long inputs are cut short."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        short = value if len(value) <= _ECHO_LIMIT else value[:_ECHO_LIMIT] + "..."
        return short.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return printable(str(value))


class SafeValidationRoute(APIRoute):
    """Answers request validation errors itself, in FastAPI's shape, with `printable` inputs."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return JSONResponse(status_code=422, content={"detail": jsonable_encoder(printable(exc.errors()))})
            except StarletteHTTPException as exc:  # Starlette's own: Request.json() raises it
                if exc.status_code != 400 or exc.detail != _UNPARSED_BODY:
                    raise
                # bytes that are not UTF-8: malformed like any other body that is not JSON, so the same 422
                detail = [{"loc": ["body"], "msg": "is not JSON text (UTF-8)", "type": "json_invalid"}]
                return JSONResponse(status_code=422, content={"detail": detail})

        return handle


def _not_found(what: str, ident: str) -> HTTPException:
    return HTTPException(404, detail=f"no {what} with id {ident!r}")


@contextmanager
def _engine_errors(loc: tuple[str, ...] = ("body",), what: str = "event", ident: str = "") -> Iterator[None]:
    """Engine exceptions for bad input or unknown rows, as 422 naming the field, or 404."""
    try:
        yield
    except local.InvalidEvent as exc:
        raise _invalid((*loc, exc.field), exc.message) from exc
    except NotFound as exc:
        raise _not_found(what, ident) from exc


# --- ETags and preconditions -------------------------------------------------------------------


def etag_of(event_id: str, version: int) -> str:
    """Strong ETag: the version changes with every write, the id prefix ties it to one event."""
    return f'"{version}-{event_id[:8]}"'


def if_match_versions(header: str, event_id: str) -> set[int] | None:
    """The versions an If-Match list accepts for this event; None for `*` (any version).

    W/ prefixes and comma lists are accepted; tags of other events or of no known form match nothing.
    """
    items = [item.strip() for item in header.split(",") if item.strip()]
    if "*" in items:
        return None
    versions: set[int] = set()
    for item in items:
        match = _ETAG.fullmatch(item)
        if match and match.group(2) == event_id[:8]:
            versions.add(int(match.group(1)))
    return versions


def _required(if_match: str | None) -> str:
    if not if_match or not if_match.strip():
        raise HTTPException(
            428,
            detail="If-Match is required: send the ETag from GET /api/v1/events/{id} "
            "(or * to write whatever the current version is)",
        )
    return if_match


def _stale(event_id: str, current: int) -> HTTPException:
    tag = etag_of(event_id, current)
    detail = {
        "msg": f"the event has changed: it is at version {current}; re-read it and retry",
        "etag": tag,
        "version": current,
    }
    return HTTPException(412, detail=detail, headers={"ETag": tag})


def _agreed_version(if_match: str | None, event_id: str, current: int) -> int | None:
    """The version to hand to the engine (which re-checks it in the write's transaction), or 412."""
    wanted = if_match_versions(_required(if_match), event_id)
    if wanted is None:
        return None
    if current not in wanted:
        raise _stale(event_id, current)
    return current


# --- cursors and windows -----------------------------------------------------------------------


def encode_cursor(range_start: str, event_id: str) -> str:
    """Opaque to clients: URL-safe base64 of the last row's keyset (range_start, id)."""
    raw = json.dumps([range_start, event_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """The keyset of a cursor this API made, or 422 naming `cursor`."""
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        value = json.loads(raw)
    except (binascii.Error, ValueError):
        raise _invalid(("query", "cursor"), "is not a cursor this API gave out") from None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, str) for v in value)
        or not _RANGE_KEY.fullmatch(value[0])
        or not _ID.fullmatch(value[1])
    ):
        raise _invalid(("query", "cursor"), "is not a cursor this API gave out")
    return value[0], value[1]


def window_key(name: str, value: str | None) -> str | None:
    """A query bound (RFC 3339 with offset, or a date meaning 00:00 UTC) as the store's UTC range key."""
    if value is None:
        return None
    try:
        return range_key(canonical_time(value, all_day=len(value) == 10))
    except (ValueError, OverflowError):
        raise _invalid(
            ("query", name), "must be an RFC 3339 date-time with offset (2026-12-01T09:00:00Z) or a date (2026-12-01)"
        ) from None


# --- bodies ------------------------------------------------------------------------------------


def event_bodies(conn: Connection, rows: list[EventWithLinks]) -> list[dict[str, Any]]:
    """The public event shape plus per-binding sync states and the ETag (one sync query per page)."""
    states = outbox_store.sync_states(conn, rows)
    return [
        {**event_json(row), "sync": states.get(row["id"], []), "etag": etag_of(row["id"], row["version"])}
        for row in rows
    ]


def live_row(conn: Connection, event_id: str, user_id: str) -> EventWithLinks:
    """A live event of the user; tombstones and other users' events are 404 like ids that never existed."""
    rows = event_store.get_events(conn, [event_id]) if _ID.fullmatch(event_id) else []
    if not rows or rows[0]["deleted"] or users.calendar_owner(conn, rows[0]["calendar_id"]) != user_id:
        raise _not_found("event", event_id)
    return rows[0]


def _event_response(engine: Engine, event_id: str, response: Response, user_id: str) -> dict[str, Any]:
    with engine.begin() as conn:
        (body,) = event_bodies(conn, [live_row(conn, event_id, user_id)])
    response.headers["ETag"] = body["etag"]
    return body


def differing_fields(local_side: dict[str, Any] | None, remote_side: dict[str, Any] | None) -> list[str]:
    """What a person has to decide about: edited fields that differ, or that one side was deleted."""
    if local_side is None or remote_side is None:
        return [] if local_side is remote_side else ["deleted"]
    names = [n for n in dict.fromkeys([*local_side, *remote_side]) if n not in _BOOKKEEPING]
    return [n for n in names if local_side.get(n) != remote_side.get(n)]


def conflict_body(row: ConflictRow) -> dict[str, Any]:
    body: dict[str, Any] = jsonable(dict(row))
    body["differing_fields"] = differing_fields(row["local"], row["remote"])
    body["clashing_fields"] = clashing_fields(row["base"], row["local"], row["remote"])
    return body


def clashing_fields(
    base: dict[str, Any] | None, local_side: dict[str, Any] | None, remote_side: dict[str, Any] | None
) -> list[str]:
    """The conflict record keeps the three sides, not the merge's verdict: it is worked out again (pure)."""
    if base is None or local_side is None or remote_side is None:
        return []
    sides = (EventData.from_json(side) for side in (base, local_side, remote_side))
    return list(merge(*sides).clashes)


def calendar_bodies(conn: Connection, user_id: str) -> list[dict[str, Any]]:
    counts = event_pages.event_counts(conn, user_id)
    per_calendar: dict[str, list[dict[str, Any]]] = {}
    for b in account_store.list_bindings(conn, user_id=user_id):
        per_calendar.setdefault(b["calendar_id"], []).append(
            {
                "id": b["id"],
                "direction": b["direction"],
                "remote_calendar_id": b["remote_calendar_id"],
                "account_id": b["account_id"],
            }
        )
    return [
        {**jsonable(c), "event_count": counts.get(c["id"], 0), "bindings": per_calendar.get(c["id"], [])}
        for c in account_store.list_calendars(conn, user_id)
    ]


# --- writes ------------------------------------------------------------------------------------


def guarded_write(
    engine: Engine,
    event_id: str,
    if_match: str | None,
    write: Callable[[int | None], local.LocalChange],
    user_id: str,
) -> local.LocalChange:
    """428 without If-Match, 404 for no live event of the user, 412 for a stale tag. The check here gives
    the 412 its current ETag; the one that must hold under concurrency is the engine's, at the write
    (an event never moves to another calendar, so the owner checked is the owner written)."""
    _required(if_match)
    with engine.begin() as conn:
        current = live_row(conn, event_id, user_id)["version"]
    version = _agreed_version(if_match, event_id, current)
    try:
        with _engine_errors(ident=event_id):
            return write(version)
    except local.StaleVersion as exc:
        raise _stale(event_id, exc.current) from exc


def resolve(
    engine: Engine, conflict_id: str, request: ResolveRequest, user_id: str, author: Author = LIBRARY
) -> ConflictRow:
    """Hand the decision to the engine: 404 unknown (or another user's), 409 no longer open, 422 for a
    bad merged event."""
    if not _ID.fullmatch(conflict_id):
        raise _not_found("conflict", conflict_id)
    with engine.begin() as conn:
        if users.conflict_owner(conn, conflict_id) != user_id:
            raise _not_found("conflict", conflict_id)
    merged = request.merged.changes() if request.merged is not None else None
    try:
        with _engine_errors(loc=("body", "merged"), what="conflict", ident=conflict_id):
            return resolve_conflict(
                engine, conflict_id, keep=request.keep, merged=merged, remote_etag=request.remote_etag, author=author
            )
    except ConflictResolved as exc:
        raise HTTPException(409, detail=str(exc)) from exc
    except ConflictChanged as exc:
        raise HTTPException(409, detail={"msg": str(exc), "conflict": conflict_body(exc.conflict)}) from exc


# --- routes ------------------------------------------------------------------------------------

EventId = Annotated[str, Path(max_length=64)]
IfMatch = Annotated[str | None, Header(description="ETag of the version being changed (required)")]


def api_router(engine: Engine) -> APIRouter:
    router = APIRouter(prefix=PREFIX, route_class=SafeValidationRoute, responses=API_ERRORS)
    _status_routes(router, engine)
    _calendar_routes(router, engine)
    _event_read_routes(router, engine)
    _event_write_routes(router, engine)
    _conflict_routes(router, engine)
    binding_routes(router, engine)  # POST /accounts/{account_id}/bindings (service/binding_routes.py)
    return router


def _status_routes(router: APIRouter, engine: Engine) -> None:
    @router.get("/status")
    def status(caller: CallerDep) -> dict[str, Any]:
        """Sync health of the caller's accounts and bindings: tokens, backoff, open conflicts, backlogs."""
        return status_snapshot(engine, caller.user_id)


def _calendar_routes(router: APIRouter, engine: Engine) -> None:
    @router.get("/calendars", response_model=CalendarListOut)
    def list_calendars(caller: CallerDep) -> dict[str, Any]:
        """The caller's local calendars with their bindings and live event counts."""
        with engine.begin() as conn:
            return {"calendars": calendar_bodies(conn, caller.user_id)}


def _event_read_routes(router: APIRouter, engine: Engine) -> None:
    @router.get("/events", response_model=EventPageOut)
    def list_events(
        caller: CallerDep,
        calendar_id: Annotated[str | None, Query(max_length=64)] = None,
        start: Annotated[str | None, Query(max_length=64, description="window start (RFC 3339 or date)")] = None,
        end: Annotated[str | None, Query(max_length=64, description="window end, exclusive")] = None,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    ) -> dict[str, Any]:
        """Live events overlapping [start, end), by start time, a keyset page at a time."""
        low, high = window_key("start", start), window_key("end", end)
        if low and high and high <= low:
            raise _invalid(("query", "end"), "must be after start")
        after = decode_cursor(cursor) if cursor is not None else None
        with engine.begin() as conn:
            if calendar_id is not None and not (
                _ID.fullmatch(calendar_id) and account_store.calendar_exists(conn, calendar_id, caller.user_id)
            ):
                raise _invalid(("query", "calendar_id"), f"no calendar with id {calendar_id!r}")
            page = event_pages.page_events(
                conn,
                calendar_id=calendar_id,
                start=low,
                end=high,
                after=after,
                limit=limit,
                user_id=caller.user_id,
            )
            bodies = event_bodies(conn, page.rows)
        last = page.rows[-1] if page.rows and page.more else None
        return {"events": bodies, "next_cursor": encode_cursor(last["range_start"], last["id"]) if last else None}

    @router.get("/events/{event_id}", response_model=EventOut, responses={**_NOT_FOUND, 304: {}})
    def get_event(
        event_id: EventId,
        response: Response,
        caller: CallerDep,
        if_none_match: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any] | Response:
        """One live event with its ETag (If-None-Match with the current ETag answers 304)."""
        body = _event_response(engine, event_id, response, caller.user_id)
        if if_none_match and body["version"] in (if_match_versions(if_none_match, event_id) or set()):
            return Response(status_code=304, headers={"ETag": body["etag"]})
        return body


def _event_write_routes(router: APIRouter, engine: Engine) -> None:
    @router.post("/events", status_code=201, response_model=EventOut, responses={201: {"links": EVENT_LINKS}})
    def create_event(body: EventCreate, response: Response, caller: CallerDep, author: AuthorDep) -> dict[str, Any]:
        """A new local event in one of the caller's calendars, queued for every push-enabled binding of it."""
        with engine.begin() as conn:  # another user's calendar is refused like one that does not exist
            if not account_store.calendar_exists(conn, body.calendar_id, caller.user_id):
                raise _invalid(("body", "calendar_id"), f"no calendar with id {body.calendar_id!r}")
        with _engine_errors():
            change = local.create_event(engine, body.calendar_id, body.changes(), author=author)
        response.headers["Location"] = f"{PREFIX}/events/{change.event_id}"
        return _event_response(engine, change.event_id, response, caller.user_id)

    @router.patch("/events/{event_id}", response_model=EventOut, responses={**_GUARDED, 200: {"links": EVENT_LINKS}})
    def patch_event(
        event_id: EventId,
        body: EventChanges,
        response: Response,
        caller: CallerDep,
        author: AuthorDep,
        if_match: IfMatch = None,
    ) -> dict[str, Any]:
        """Change the given fields of the version named by If-Match."""
        guarded_write(
            engine,
            event_id,
            if_match,
            lambda version: local.update_event(engine, event_id, body.changes(), version, author=author),
            caller.user_id,
        )
        return _event_response(engine, event_id, response, caller.user_id)

    @router.put("/events/{event_id}", response_model=EventOut, responses=_GUARDED)
    def replace_event(
        event_id: EventId,
        body: EventReplacement,
        response: Response,
        caller: CallerDep,
        author: AuthorDep,
        if_match: IfMatch = None,
    ) -> dict[str, Any]:
        """Replace all editable fields of the version named by If-Match (optional ones left out are cleared)."""
        guarded_write(
            engine,
            event_id,
            if_match,
            lambda version: local.update_event(engine, event_id, body.changes(), version, author=author),
            caller.user_id,
        )
        return _event_response(engine, event_id, response, caller.user_id)

    @router.delete("/events/{event_id}", status_code=204, response_class=Response, responses=_GUARDED)
    def delete_event(event_id: EventId, caller: CallerDep, author: AuthorDep, if_match: IfMatch = None) -> Response:
        """Delete the version named by If-Match (a tombstone, so the delete can be pushed)."""
        guarded_write(
            engine,
            event_id,
            if_match,
            lambda version: local.delete_event(engine, event_id, version, via="the REST API", author=author),
            caller.user_id,
        )
        return Response(status_code=204)


def _conflict_routes(router: APIRouter, engine: Engine) -> None:
    @router.get("/conflicts", response_model=ConflictListOut)
    def list_conflicts(caller: CallerDep, status: Literal["open", "resolved", "all"] = "open") -> dict[str, Any]:
        """The caller's conflicts with base, local and remote side by side and the fields that differ."""
        with engine.begin() as conn:
            rows = conflict_store.list_conflicts(
                conn, status=None if status == "all" else status, user_id=caller.user_id
            )
        return {"conflicts": [conflict_body(r) for r in rows]}

    @router.post(
        "/conflicts/{conflict_id}/resolve",
        response_model=ConflictOut,
        responses={
            404: {"model": ProblemOut},
            409: {
                "model": ProblemOut | ConflictChangedProblemOut,
                "description": (
                    "already resolved (detail: a message), or the remote side changed since `remote_etag` "
                    "(detail: the message and the conflict as it is now, still open)"
                ),
            },
        },
    )
    def settle_conflict(
        conflict_id: Annotated[str, Path(max_length=64)], body: ResolveRequest, caller: CallerDep, author: AuthorDep
    ) -> dict[str, Any]:
        """Settle a conflict by keeping one side or giving the merged event. The remote side applied is
        the newest calsync has seen; send `remote_etag` to refuse a decision made on an older one."""
        return conflict_body(resolve(engine, conflict_id, body, caller.user_id, author))
