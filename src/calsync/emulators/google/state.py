"""The Google emulator's store: calendars, their events, change logs and token epochs, under one lock.

Storage layout per calendar, chosen for the hot paths:

* ``order``: every event ever created, by an immutable creation ordinal (index in the
  list). Full listings page over it with keyset tokens, so concurrent inserts and deletes
  never make a page skip an event that existed unchanged throughout the walk.
* ``log``: one entry per change (``log[seq - 1]`` is the id changed at sequence ``seq``).
  Incremental listings page over it from the token's sequence, skipping entries that a
  later change of the same event superseded; no scan of the whole calendar is needed.

The API's operations are mixins over :class:`_Store` (calendars, events, sync), joined in
``emulator.GoogleEmulator``.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from starlette.responses import Response

from calsync.emulators.common import is_int
from calsync.emulators.common import rfc3339_ms as _fmt_ts
from calsync.emulators.faults import RequestLog
from calsync.emulators.google.errors import (
    _error_response,
    _not_found,
    error_for_status,
)
from calsync.emulators.google.push import DEFAULT_TTL_SECONDS, PushHub
from calsync.emulators.google.recurrence import _Occ, _Series
from calsync.emulators.oauth.google import GoogleAuth
from calsync.emulators.push_hub import HUB_SWITCH_CHECKS
from calsync.emulators.store_base import StoreBase

API_PREFIX = "/calendar/v3"
BASE32HEX = "0123456789abcdefghijklmnopqrstuv"
_CLIENT_ID_RE = re.compile(r"^[0-9a-v]{5,1024}$")

#: Documented-variant behaviours that tests may flip with ``POST /emulator/switches``.
DEFAULT_SWITCHES: dict[str, Any] = {
    # reason of the 400 for syncToken + a restricted parameter ("invalid" or "syncTokenWithRequestRestrictions")
    "sync_token_restriction_reason": "invalid",
    # stop a page after scanning this many candidates, giving short or empty pages with nextPageToken
    "page_scan_limit": None,
    # quirk seen in the field: a full listing with orderBy or q yields no nextSyncToken
    "no_sync_token_with_order_or_q": False,
    # sync tokens older than this many seconds answer 410 (None = never expire)
    "sync_token_ttl_seconds": None,
    # updatedMin older than this many seconds answers 410 updatedMinTooLongAgo (None = no horizon)
    "updated_min_horizon_seconds": None,
    # outcome of a hangoutsMeet createRequest: "success" or "failure"
    "conference_create_status": "success",
    # events.watch: accept plain-http receiver addresses on loopback hosts (tests); never elsewhere
    "push_allow_http": True,
    # events.watch: the longest channel lifetime granted; Google publishes no maximum for Calendar
    "push_max_ttl_seconds": DEFAULT_TTL_SECONDS,
    # push delivery: first retry delay (doubling per attempt) and attempts per message, for 5xx/transport errors
    "push_retry_base_ms": 200,
    "push_max_attempts": 5,
    # push delivery to non-loopback receivers (off: they are logged as skipped, so tests never reach out)
    "push_deliver_remote": False,
}

_SWITCH_CHECKS: dict[str, Callable[[Any], bool]] = {
    "sync_token_restriction_reason": lambda v: v in ("invalid", "syncTokenWithRequestRestrictions"),
    "page_scan_limit": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
    "no_sync_token_with_order_or_q": lambda v: isinstance(v, bool),
    "sync_token_ttl_seconds": lambda v: (
        v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0)
    ),
    "updated_min_horizon_seconds": lambda v: (
        v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0)
    ),
    "conference_create_status": lambda v: v in ("success", "failure"),
    "push_allow_http": lambda v: isinstance(v, bool),
    "push_max_ttl_seconds": lambda v: is_int(v, 1, 10 * 365 * 86400),
    **HUB_SWITCH_CHECKS,
}

# ---------------------------------------------------------------------------------------------
# Ids


_B32_PAIRS = [a + b for a in BASE32HEX for b in BASE32HEX]  # 10 bits -> two base32hex characters
_PAIR_SHIFTS = tuple(range(0, 130, 10))


def _random_id(rng: random.Random | None = None) -> str:
    """A 26-character base32hex id (130 random bits), the shape of Google's generated event ids."""
    n = rng.getrandbits(130) if rng is not None else int.from_bytes(os.urandom(17), "big") >> 6
    return "".join([_B32_PAIRS[(n >> shift) & 1023] for shift in _PAIR_SHIFTS])


# ---------------------------------------------------------------------------------------------
# Stored calendars and events


@dataclass(eq=False, slots=True)
class _Event:
    """One stored event (single, series, or exception of a series), including tombstones."""

    id: str
    ordinal: int
    data: dict[str, Any]
    ical_uid: str
    created: str
    creator: dict[str, Any]
    organizer: dict[str, Any]
    sequence: int = 0
    etag: str = ""
    updated: str = ""
    updated_ts: float = 0.0
    change_seq: int = 0
    start_ts: float = 0.0
    end_ts: float = 0.0
    span_end_ts: float = 0.0
    recurring_event_id: str | None = None
    original_start: dict[str, Any] | None = None
    original_key: float | None = None
    conference_request_ids: set[str] = field(default_factory=set)
    compiled: _Series | None = None
    cache: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.data.get("status", "confirmed")

    @property
    def cancelled(self) -> bool:
        return self.data.get("status") == "cancelled"

    @property
    def is_series(self) -> bool:
        return bool(self.data.get("recurrence")) and self.recurring_event_id is None


@dataclass(eq=False)
class _Calendar:
    """A calendar, its events, its change log and its token epoch."""

    id: str
    owner: str
    primary: bool
    summary: str
    time_zone: str
    etag: str
    updated: str
    description: str | None = None
    location: str | None = None
    epoch: int = 0
    events: dict[str, _Event] = field(default_factory=dict)
    order: list[_Event] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    exceptions: dict[str, dict[float, str]] = field(default_factory=dict)
    ical_index: dict[str, str] = field(default_factory=dict)
    events_etag: str = ""

    @property
    def seq(self) -> int:
        """Current change sequence: the number of changes ever made to this calendar's events."""
        return len(self.log)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


# ---------------------------------------------------------------------------------------------
# The store


class _Store(StoreBase):
    """All emulator state, in memory, guarded by one lock (HTTP handlers and tests share it)."""

    api_prefix = API_PREFIX
    default_switches = DEFAULT_SWITCHES
    switch_checks = _SWITCH_CHECKS
    push: PushHub

    def __init__(self, seed: int = 0, oauth: bool = False) -> None:
        #: the authorization server served beside the API; with ``oauth`` the API takes only its tokens
        self.oauth = GoogleAuth()
        self.oauth_required = oauth
        super().__init__(seed, RequestLog())
        self.push = PushHub(lambda: self.switches, seed=seed)

    def reset(self) -> None:
        """Everything the base drops, and the authorization server's clients, grants and tokens."""
        super().reset()
        self.oauth.reset()

    # -- lifecycle ------------------------------------------------------------------------------

    def _reset_state(self) -> None:
        super()._reset_state()
        self._calendars: dict[str, _Calendar] = {}
        self._owned: dict[str, list[str]] = {}
        self._etag_counter = 0
        self._dirty: set[str] = set()  # calendars whose events changed in the current write

    def _notify_changes(self) -> None:
        """Each calendar a write changed notifies its watchers once; only ``_touch`` marks one, after validation."""
        if self._dirty:
            changed, self._dirty = self._dirty, set()
            for cal_id in changed:
                self.push.notify(cal_id, "exists")

    @staticmethod
    def _fault_response(status: int, reason: str | None, rule: dict[str, Any]) -> Response:
        return _error_response(error_for_status(status, reason))

    # -- small helpers --------------------------------------------------------------------------

    def _next_etag(self) -> str:
        """Quoted, opaque, strictly increasing: every change gets a new one."""
        self._etag_counter = max(self._etag_counter + 1, time.time_ns() // 1000)
        return f'"{self._etag_counter}"'

    @staticmethod
    def user_email(token: str) -> str:
        """The user a bearer token names: the token itself if it looks like an email."""
        return token if "@" in token else f"{token}@example.com"

    def token_user(self, token: str) -> str | None:
        """The user a bearer token speaks for: an access token this emulator issued (while valid) names
        its user; any other string is the user itself, unless OAuth is required (then None: a 401)."""
        user, state = self.oauth.user_for(token)
        if user is not None:
            return user
        return None if self.oauth_required or state != "unknown" else self.user_email(token)

    def ensure_user(self, email: str) -> _Calendar:
        """Create the user's primary calendar on first sight; returns it."""
        with self._lock:
            cal = self._calendars.get(email)
            if cal is None:
                cal = self._new_calendar(email, email, primary=True, summary=email, time_zone="UTC")
            return cal

    def _new_calendar(
        self,
        cal_id: str,
        owner: str,
        primary: bool,
        summary: str,
        time_zone: str,
        description: str | None = None,
        location: str | None = None,
    ) -> _Calendar:
        now = _fmt_ts(time.time())
        cal = _Calendar(
            cal_id,
            owner,
            primary,
            summary,
            time_zone,
            self._next_etag(),
            now,
            description=description,
            location=location,
        )
        cal.events_etag = cal.etag
        self._calendars[cal_id] = cal
        self._owned.setdefault(owner, []).append(cal_id)
        return cal

    def _calendar(self, user: str, ref: str) -> _Calendar:
        cal = self._calendars.get(user if ref == "primary" else ref)
        if cal is None or cal.owner != user:
            raise _not_found()
        return cal

    def _touch(self, cal: _Calendar, ev: _Event, now: float, now_text: str | None = None) -> None:
        """Record a change: new ETag and updated time, one change-log entry, caches dropped."""
        ev.etag = self._next_etag()
        ev.updated_ts = now
        ev.updated = now_text or _fmt_ts(now)
        cal.log.append(ev.id)
        ev.change_seq = len(cal.log)
        ev.cache.clear()
        cal.updated = ev.updated
        cal.events_etag = ev.etag
        self._dirty.add(cal.id)

    def _store_new(self, cal: _Calendar, ev: _Event, now: float, now_text: str | None = None) -> None:
        ev.ordinal = len(cal.order)
        cal.order.append(ev)
        cal.events[ev.id] = ev
        if ev.recurring_event_id is not None and ev.original_key is not None:
            cal.exceptions.setdefault(ev.recurring_event_id, {})[ev.original_key] = ev.id
        else:
            cal.ical_index[ev.ical_uid] = ev.id
        self._touch(cal, ev, now, now_text)

    def _new_event_id(self, cal: _Calendar) -> str:
        while True:
            candidate = _random_id()
            if candidate not in cal.events:
                return candidate

    @staticmethod
    def _organizer(cal: _Calendar, body: dict[str, Any] | None) -> dict[str, Any]:
        given = (body or {}).get("organizer")
        if isinstance(given, dict) and isinstance(given.get("email"), str) and given["email"]:
            out = {"email": given["email"]}
            if isinstance(given.get("displayName"), str):
                out["displayName"] = given["displayName"]
            if given["email"] == cal.id:
                out["self"] = True
            return out
        if cal.primary:
            return {"email": cal.id, "self": True}
        return {"email": cal.id, "displayName": cal.summary, "self": True}

    # -- event lookup ---------------------------------------------------------------------------

    def _virtual(self, cal: _Calendar, event_id: str) -> tuple[_Event, _Occ] | None:
        """Resolve ``<seriesId>_<start>`` to a live series and an occurrence it generates."""
        base, sep, suffix = event_id.rpartition("_")
        series = cal.events.get(base) if sep else None
        if series is None or not series.is_series or series.cancelled:
            return None
        occ = self._compiled(cal, series).find(suffix)
        return (series, occ) if occ is not None else None

    def _compiled(self, cal: _Calendar, series: _Event) -> _Series:
        if series.compiled is None:
            series.compiled = _Series(series.data, cal.zone)
        return series.compiled

    def _materialize(self, cal: _Calendar, series: _Event, occ: _Occ, event_id: str) -> _Event:
        """An exception event (not yet stored) copying the series for one occurrence."""
        data = {k: v for k, v in series.data.items() if k != "recurrence"}
        data["start"], data["end"] = dict(occ.start_json), dict(occ.end_json)
        ev = _Event(
            event_id,
            -1,
            data,
            series.ical_uid,
            _fmt_ts(time.time()),
            series.creator,
            series.organizer,
            sequence=series.sequence,
            etag=series.etag,
            recurring_event_id=series.id,
            original_start=dict(occ.start_json),
            original_key=occ.key,
        )
        ev.conference_request_ids = set(series.conference_request_ids)
        return ev
