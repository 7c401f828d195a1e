"""The change feed (`GET /api/v1/changes`, `GET /api/v1/changes/head`) over store/journal.py, the
watcher that wakes long polls, and the journal's upkeep in a service process.

Reading. Every read first gives committed journal rows their positions (journal.sequence, in a
short transaction of its own, only when some row waits for one), then reads the caller's changes
after the cursor's position. A cursor is opaque to clients: URL-safe base64 of `feed:v1:<position>`.
A cursor the journal no longer covers (pruned by retention, or ahead of the feed: a database put
back from a backup) answers 410 with the way to start again: take the head cursor, list the events,
follow the feed from that head.

Long polls (`wait=S`). A request with nothing new waits on the process's FeedWatcher without a
database connection and without a thread: an asyncio future per request. The watcher is one thread
per process that runs only while some request waits (and lingers a moment after): every INTERVAL it
looks at the journal's head and whether any committed row waits for a position (two indexed reads),
sequences those rows if so, and asks which users have rows between the head it last saw and the new
one (journal.readers_after); the requests of those users are woken and read again. So a commit made
by any process (a worker on PostgreSQL, this API, the CLI) reaches a waiting reader within about one
interval plus one read. The newest row id is no good signal here: on PostgreSQL a row can commit
after a row with a higher id.

Upkeep. `calsync serve` starts JournalUpkeep (engine/journal_upkeep.py; `calsync worker` runs it
too): every second it sequences what waits, every hour it prunes past the retention."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from calsync.engine.journal_upkeep import JournalUpkeep, sequence_waiting
from calsync.service.api import PREFIX, SafeValidationRoute
from calsync.service.auth import CallerDep, authenticate
from calsync.service.errors import API_ERRORS, ProblemOut
from calsync.statuses import ChangeKind
from calsync.store import journal
from calsync.views import jsonable

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_WAIT = 60.0  # seconds a long poll may ask for
INTERVAL = 0.025  # the watcher's look at the journal while someone waits
LINGER = 2.0  # the watcher keeps looking this long after the last waiter left (clients poll again at once)

_CURSOR_PREFIX = "feed:v1:"
_CURSOR = re.compile(r"feed:v1:(0|[1-9][0-9]{0,18})")  # a BIGINT position
_HEAD_PATH = f"{PREFIX}/changes/head"
_SNAPSHOT_PATH = f"{PREFIX}/events"


# --- cursors -------------------------------------------------------------------------------------


class BadCursor(ValueError):
    """Not a cursor this feed gave out."""


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        match = _CURSOR.fullmatch(raw.decode("ascii"))
    except (binascii.Error, ValueError):
        match = None
    if match is None or int(match.group(1)) >= 2**63:
        raise BadCursor("is not a cursor of this feed: pass back the `cursor` of an answer, or none to start")
    return int(match.group(1))


# --- what the routes answer -----------------------------------------------------------------------


class ChangeOut(BaseModel):
    event_id: str
    version: int = Field(description="the event's version after this change")
    kind: ChangeKind
    side: str = Field(description='who made it: "local" (API, web page, CLI, library) or the binding id')
    author: str = Field(description='who, in words: "api key <name>", "cli", "google binding <id>", ...')
    fields: list[str] = Field(description="the fields that changed (a conflict: what it is about)")
    calendar_id: str
    at: str = Field(description="when the change was written (UTC)")
    conflict_id: str | None = Field(default=None, description="the conflict opened or resolved")


class ChangePageOut(BaseModel):
    changes: list[ChangeOut] = Field(description="in commit order, oldest first")
    cursor: str = Field(description="pass back as `cursor` to go on after these changes (also when there are none)")
    more: bool = Field(description="the page is full: more changes may follow at once")


class HeadOut(BaseModel):
    cursor: str = Field(description="a cursor at the newest change: following it shows every change made after")


class ResnapshotOut(BaseModel):
    """The cursor is older than what the journal keeps: start again from a snapshot."""

    detail: str
    head_url: str = Field(description="1. GET it for the head cursor (before listing)")
    snapshot_url: str = Field(description="2. list the events from here (every page)")


_FEED_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ProblemOut, "description": "The cursor is not one this feed gave out"},
    410: {
        "model": ResnapshotOut,
        "description": "The cursor is older than the journal's retention (or ahead of the feed): take the head "
        "cursor, list the events, then follow the feed from that head",
    },
}


def _change_body(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": row["event_id"],
        "version": row["version"],
        "kind": row["kind"],
        "side": row["side"],
        "author": row["author"],
        "fields": list(row["fields"] or []),
        "calendar_id": row["calendar_id"],
        "at": jsonable(row["created_at"]),
        "conflict_id": row["conflict_id"],
    }


def _gone(detail: str) -> JSONResponse:
    body = ResnapshotOut(
        detail=f"{detail}. Start again: GET {_HEAD_PATH} for a head cursor, list GET {_SNAPSHOT_PATH} "
        "(every page), then follow the feed with that cursor",
        head_url=_HEAD_PATH,
        snapshot_url=_SNAPSHOT_PATH,
    )
    return JSONResponse(body.model_dump(), status_code=410)


# --- reading -------------------------------------------------------------------------------------


class CursorAhead(Exception):
    """The cursor is past the feed's head: not from this database as it is now."""


def read_page(
    engine: Engine, user_id: str, after: int | None, limit: int, *, sequenced: bool = False
) -> journal.FeedPage:
    """The user's page after `after`, the rows that wait sequenced first (CursorExpired, CursorAhead).
    `sequenced`: the watcher just did that, and `after` is a position this feed answered: a re-read
    after a wake-up goes straight to the rows (one connection, the fewest round trips)."""
    with engine.connect() as conn:
        if not sequenced:
            sequence_waiting(conn)
            if after is not None and after > journal.head(conn):
                raise CursorAhead
        return journal.read_feed(conn, user_id, after, limit, diffs=False)


def head_position(engine: Engine) -> int:
    with engine.connect() as conn:
        sequence_waiting(conn)
        return journal.head(conn)


# --- the watcher ----------------------------------------------------------------------------------


@dataclass(eq=False)
class _Waiter:
    user_id: str
    seen: int  # no change of the user at or below this position is new to it
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class FeedWatcher:
    """Wakes the long polls of a process when their users have new changes (see the module's note)."""

    def __init__(self, engine: Engine, interval: float = INTERVAL, linger: float = LINGER) -> None:
        self.engine = engine
        self.interval = interval
        self.linger = linger
        self._lock = threading.Lock()
        self._waiters: set[_Waiter] = set()
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def running(self) -> bool:
        with self._lock:
            return self._thread is not None

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiters)

    async def wait(self, user_id: str, seen: int, within: float) -> bool:
        """Until a change of `user_id` past position `seen` is sequenced (True) or `within` seconds
        pass (False). Holds no connection and no thread meanwhile."""
        loop = asyncio.get_running_loop()
        waiter = _Waiter(user_id, seen, loop, loop.create_future())
        with self._lock:
            if self._closed:
                return False
            self._waiters.add(waiter)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="calsync-feed-watcher", daemon=True)
                self._thread.start()
        try:
            await asyncio.wait_for(waiter.future, within)
        except TimeoutError:
            return False
        else:
            return True
        finally:
            with self._lock:
                self._waiters.discard(waiter)

    def close(self) -> None:
        """Wake every waiter (they answer what they have) and stop the thread."""
        with self._lock:
            self._closed = True
            waiters = list(self._waiters)
        for waiter in waiters:
            waiter.loop.call_soon_threadsafe(_settle, waiter.future)

    def _run(self) -> None:
        idle_since: float | None = None
        while True:
            with self._lock:
                waiters = list(self._waiters)
                now = time.monotonic()
                idle_since = None if waiters else idle_since or now
                if self._closed or (idle_since is not None and now - idle_since >= self.linger):
                    self._thread = None
                    return
            if waiters:
                try:
                    self._look(waiters)
                except Exception:  # the database away for a moment: the waiters time out at worst
                    log.warning("the feed watcher could not read the journal", exc_info=True)
                    time.sleep(min(1.0, self.interval * 20))
            time.sleep(self.interval)

    def _look(self, waiters: list[_Waiter]) -> None:
        with self.engine.connect() as conn:
            sequence_waiting(conn)
            head = journal.head(conn)
            low = min(w.seen for w in waiters)
            if head <= low:
                return
            newest = journal.readers_after(conn, low, head)
        for waiter in waiters:
            if newest.get(waiter.user_id, 0) > waiter.seen:
                waiter.loop.call_soon_threadsafe(_settle, waiter.future)
            # positions up to head are final: only what comes after them can be new to this waiter
            waiter.seen = max(waiter.seen, head)


# --- the routes ----------------------------------------------------------------------------------


@dataclass
class Feed:
    """What a service keeps in `app.state.feed`: the watcher, and the upkeep once `calsync serve`
    starts it. `max_wait` caps what a long poll waits (a test service may shorten it)."""

    engine: Engine
    watcher: FeedWatcher
    max_wait: float = MAX_WAIT
    upkeep: JournalUpkeep | None = None

    def start_upkeep(self, days: float) -> JournalUpkeep:
        self.upkeep = JournalUpkeep(self.engine, days)
        self.upkeep.start()
        return self.upkeep

    def close(self) -> None:
        self.watcher.close()
        if self.upkeep is not None:
            self.upkeep.stop()


Cursor = Annotated[
    str | None,
    Query(max_length=128, description="the `cursor` of the previous answer; none: from the oldest change kept"),
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="at most this many changes")]
Wait = Annotated[
    float,
    Query(
        ge=0,
        le=MAX_WAIT,
        description="when nothing is new, wait up to this many seconds for a change (long poll); 0: answer at once",
    ),
]


def feed_router(feed: Feed) -> APIRouter:
    router = APIRouter(prefix=PREFIX, route_class=SafeValidationRoute, responses=API_ERRORS)
    engine = feed.engine

    @router.get("/changes", response_model=ChangePageOut, responses=_FEED_ERRORS)
    async def list_changes(
        caller: CallerDep, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT, wait: Wait = 0
    ) -> dict[str, Any] | JSONResponse:
        """The caller's event changes after the cursor, in commit order: created, updated, deleted,
        undeleted, conference changed, conflict opened or resolved. Each change once, never reordered,
        whichever process committed it. `wait` long-polls when nothing is new."""
        try:
            after = decode_cursor(cursor) if cursor is not None else None
        except BadCursor as exc:
            return JSONResponse({"detail": f"cursor {exc!s}"}, status_code=400)
        deadline = time.monotonic() + min(wait, feed.max_wait)
        sequenced = False
        while True:
            try:
                page = await run_in_threadpool(read_page, engine, caller.user_id, after, limit, sequenced=sequenced)
            except journal.CursorExpired:
                return _gone("This cursor is older than the changes the journal keeps (retention)")
            except CursorAhead:
                return _gone("This cursor is ahead of the feed (was the database restored from a backup?)")
            remaining = deadline - time.monotonic()
            if page.items or remaining <= 0:
                break
            after = page.next_position
            if not await feed.watcher.wait(caller.user_id, after, remaining):
                break
            sequenced = True  # by the watcher, just now
        return {
            "changes": [_change_body(row) for row in page.items],
            "cursor": encode_cursor(page.next_position),
            "more": page.more,
        }

    @router.get("/changes/head", response_model=HeadOut)
    def changes_head(_caller: CallerDep) -> dict[str, str]:
        """A cursor at the newest change. To start over (or after a 410): take it, list /events, then
        follow /changes from it: nothing made after the head is missed."""
        return {"cursor": encode_cursor(head_position(engine))}

    return router


def add_feed(app: FastAPI, engine: Engine) -> Feed:
    """The feed's routes on the service's app (behind its API keys), its watcher in app.state.feed."""
    feed = Feed(engine, FeedWatcher(engine))
    app.state.feed = feed
    app.include_router(feed_router(feed), dependencies=[Depends(authenticate)])
    return feed
