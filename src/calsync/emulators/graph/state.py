"""The Graph emulator's store: mailboxes, their calendars and events, change logs, subscriptions.

Storage, chosen so paging stays correct while events change (as in the Google emulator):

* each calendar keeps ``order`` (every event that ever entered it, append-only): the first
  round of a delta walks it with a keyset position, so concurrent writes never make a page
  skip an event that existed unchanged throughout the round;
* each calendar keeps ``log`` (one entry per change, ``log[seq - 1]``): later rounds walk it
  from the token's sequence, skipping entries a later change of the same item superseded.

Where Graph's documentation is silent the behaviour is a documented guess, flippable through
``POST /emulator/switches`` (see ``DEFAULT_SWITCHES``). The API's operations are mixins over
:class:`_Store` (calendars, events, delta, subscriptions), joined in ``emulator.GraphEmulator``.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from starlette.responses import Response

from calsync.emulators.common import is_int, is_num
from calsync.emulators.graph.errors import _error_response, _not_found, error_for_status
from calsync.emulators.graph.ids import (
    _decode_calendar_id,
    _decode_event_id,
    _encode_event_id,
    _mailbox_header,
)
from calsync.emulators.graph.push import GraphPushHub, Note
from calsync.emulators.graph.recurrence import _overlaps, _Series
from calsync.emulators.graph.throttle import _GraphRequestLog, _Throttle
from calsync.emulators.graph.times import _fmt_ts, _When
from calsync.emulators.oauth.microsoft import MicrosoftAuth
from calsync.emulators.push_hub import HUB_SWITCH_CHECKS
from calsync.emulators.store_base import StoreBase

API_PREFIX = "/v1.0"
USER_DOMAIN = "contoso.example"


def user_guid(email: str) -> str:
    """A mailbox's stable user id (Graph's ``id``, the token's ``oid``)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "user:" + email))


TENANT_ID = str(uuid.uuid5(uuid.NAMESPACE_DNS, USER_DOMAIN))
DEAD_HORIZON_DAYS = 730  # how far ahead dropped occurrences of a changed series are tracked

#: Documented-variant and undocumented behaviours that tests may flip with ``POST /emulator/switches``.
DEFAULT_SWITCHES: dict[str, Any] = {
    # delta page size without Prefer: odata.maxpagesize (undocumented; /events and /calendarView default to 10)
    "delta_default_page_size": 10,
    # largest odata.maxpagesize honoured; larger values are capped (undocumented)
    "delta_max_page_size": 1000,
    # stop a delta page after scanning this many candidates: short or empty pages with a nextLink
    "delta_page_scan_limit": None,
    # expired / invalid token answer: "syncStateNotFound" (410 + Location), "resyncRequired" (410 + Location),
    # or "badRequest" (400 syncStateNotFound, no Location)
    "delta_expired_response": "syncStateNotFound",
    # delta tokens older than this many seconds are expired (Outlook documents no fixed lifetime)
    "delta_token_ttl_seconds": None,
    # later rounds re-send this many already-reported changes (documented: replays happen)
    "delta_replay_count": 0,
    # every changed item appears twice in its page (documented: duplicates happen)
    "delta_duplicate_items": False,
    # field quirk: a series' occurrences are never split across pages, even past odata.maxpagesize
    "delta_keep_series_together": False,
    # longest subscription lifetime for Outlook events, in minutes: 4230 or 10080, as the documentation has
    # said at different times (../shared/reference/provider-semantics.md 2.4)
    "subscription_max_minutes": 4230,
    # scope of a "me/events" subscription: the whole "mailbox" or the "default_calendar" (undocumented)
    "me_events_subscription_scope": "mailbox",
    # POST with a transactionId already used: "return_existing" (201, the same event) or "conflict" (409)
    "transaction_id_duplicate": "return_existing",
    # the next N If-Match writes hit Exchange's own changeKey bump and answer 412 (seen in the field)
    "spurious_412_count": 0,
    # per-mailbox throttling (documented: 4 concurrent requests, 10,000 per 10 minutes); None = off
    "mailbox_concurrency_limit": None,
    "mailbox_requests_per_10min": None,
    "throttle_retry_after_seconds": 1,
    # $batch answers in reverse request order (documented: responses may come in any order)
    "batch_reverse_responses": False,
    # notificationUrl: plain http is accepted for loopback hosts (tests); never elsewhere
    "push_allow_http": True,
    # deliver to (and validate) non-loopback receivers; off: they fail / are skipped, so tests never reach out
    "push_deliver_remote": False,
    "push_retry_base_ms": 200,
    "push_max_attempts": 5,
    "delivery_timeout_s": 3.0,
    "validation_timeout_s": 10.0,
}

_SWITCH_CHECKS: dict[str, Callable[[Any], bool]] = {
    "delta_default_page_size": lambda v: is_int(v, 1, 10_000),
    "delta_max_page_size": lambda v: is_int(v, 1, 100_000),
    "delta_page_scan_limit": lambda v: v is None or is_int(v, 1, 10**9),
    "delta_expired_response": lambda v: v in ("syncStateNotFound", "resyncRequired", "badRequest"),
    "delta_token_ttl_seconds": lambda v: v is None or is_num(v, 0, 10**9),
    "delta_replay_count": lambda v: is_int(v, 0, 10_000),
    "delta_duplicate_items": lambda v: isinstance(v, bool),
    "delta_keep_series_together": lambda v: isinstance(v, bool),
    "subscription_max_minutes": lambda v: is_int(v, 1, 10**6),
    "me_events_subscription_scope": lambda v: v in ("mailbox", "default_calendar"),
    "transaction_id_duplicate": lambda v: v in ("return_existing", "conflict"),
    "spurious_412_count": lambda v: is_int(v, 0, 10**6),
    "mailbox_concurrency_limit": lambda v: v is None or is_int(v, 1, 10_000),
    "mailbox_requests_per_10min": lambda v: v is None or is_int(v, 1, 10**9),
    "throttle_retry_after_seconds": lambda v: is_int(v, 0, 86_400),
    "batch_reverse_responses": lambda v: isinstance(v, bool),
    "push_allow_http": lambda v: isinstance(v, bool),
    **HUB_SWITCH_CHECKS,
    "delivery_timeout_s": lambda v: is_num(v, 0.05, 60),
    "validation_timeout_s": lambda v: is_num(v, 0.05, 60),
}


# ---------------------------------------------------------------------------------------------
# Stored mailboxes, calendars, events and subscriptions


@dataclass(eq=False)
class _Event:
    """A single event, a series master, or (with ``master`` set) an exception of a series."""

    key: bytes
    calendar: bytes
    data: dict[str, Any]
    start: _When
    end: _When
    created: float
    modified: float
    change_key: str
    ical_uid: str
    gen: int = 0
    deleted: bool = False
    transaction_id: str | None = None
    master: _Event | None = None
    original: datetime | None = None  # exceptions: the occurrence's original start (UTC)
    series: _Series | None = None
    exceptions: dict[int, _Event] = field(default_factory=dict)
    cancelled: set[int] = field(default_factory=set)
    dead: dict[tuple[bytes, int], int] = field(default_factory=dict)  # (calendar, occ) -> seq it died at
    left_gen: dict[bytes, int] = field(default_factory=dict)  # calendar -> id generation when it left it
    online: dict[str, Any] | None = None
    is_cancelled: bool = False

    @property
    def is_series(self) -> bool:
        return self.series is not None and self.master is None

    @property
    def all_day(self) -> bool:
        return bool(self.data.get("isAllDay"))


@dataclass(eq=False)
class _Calendar:
    key: bytes
    owner: str
    name: str
    is_default: bool
    change_key: str
    color: str = "auto"
    deleted: bool = False
    order: list[_Event] = field(default_factory=list)
    positions: dict[bytes, int] = field(default_factory=dict)  # event key -> its current index in order
    log: list[tuple[bytes, int | None]] = field(default_factory=list)
    last_seq: dict[tuple[bytes, int | None], int] = field(default_factory=dict)

    @property
    def seq(self) -> int:
        return len(self.log)


@dataclass(eq=False)
class _User:
    email: str
    guid: str
    header: bytes
    default: bytes
    calendars: dict[bytes, _Calendar] = field(default_factory=dict)
    events: dict[bytes, _Event] = field(default_factory=dict)
    transactions: dict[str, bytes] = field(default_factory=dict)

    @property
    def display_name(self) -> str:
        return self.email.split("@", 1)[0].replace(".", " ").title()


@dataclass(eq=False)
class _Subscription:
    id: str
    user: str
    resource: str
    calendar: bytes | None  # None = the whole mailbox
    change_types: tuple[str, ...]
    url: str
    lifecycle_url: str | None
    client_state: str | None
    expiration: float
    immutable: bool
    created: float
    paused: bool = False
    notified: int = 0
    skipped: int = 0

    def live(self, now: float) -> bool:
        return now < self.expiration


@dataclass(frozen=True)
class _View:
    """How one request wants events rendered: zone, id form, body type and links."""

    user: _User
    zone: ZoneInfo
    tz_label: str
    immutable: bool
    text_body: bool
    base: str
    expand_props: str | None = None  # singleValueExtendedProperties filter id ("" = all) or None


@dataclass(frozen=True)
class _Change:
    """One committed change, for change notifications after the write."""

    user: str
    calendar: bytes
    change_type: str
    ev: _Event
    occ: int | None
    gen: int
    etag: str | None


def _occ_key(ev: _Event) -> int | None:
    return int(ev.original.timestamp()) if ev.original is not None else None


# ---------------------------------------------------------------------------------------------
# The store


class _Store(StoreBase):
    """All emulator state, in memory, guarded by one lock (HTTP handlers and admin calls share it)."""

    api_prefix = API_PREFIX
    default_switches = DEFAULT_SWITCHES
    switch_checks = _SWITCH_CHECKS
    requests: _GraphRequestLog
    push: GraphPushHub

    def __init__(self, seed: int = 0, oauth: bool = False) -> None:
        self.throttle = _Throttle()
        #: the identity platform served beside Graph; with ``oauth`` the API takes only its tokens
        self.oauth = MicrosoftAuth(TENANT_ID, user_guid)
        self.oauth_required = oauth
        super().__init__(seed, _GraphRequestLog())
        self.push = GraphPushHub(lambda: self.switches, self._sub_live, seed=seed)

    # -- lifecycle ------------------------------------------------------------------------------

    def _reset_state(self) -> None:
        super()._reset_state()
        self._users: dict[str, _User] = {}
        self._subs: dict[str, _Subscription] = {}
        self._ck_counter = itertools.count(int(time.time()) << 12)
        self._delta_epoch = 0
        self._user_epochs: dict[str, int] = {}
        self._pending: list[_Change] = []

    def reset(self) -> None:
        """Everything the base drops, and the mailbox throttle's counts."""
        super().reset()
        self.throttle.reset()
        self.oauth.reset()

    def _notify_changes(self) -> None:
        if self._pending:
            changes, self._pending = self._pending, []
            self._notify(changes)

    @staticmethod
    def _fault_response(status: int, reason: str | None, rule: dict[str, Any]) -> Response:
        return _error_response(error_for_status(status, reason), None)

    # -- mailboxes ------------------------------------------------------------------------------

    @staticmethod
    def user_email(token: str) -> str:
        """The mailbox a bearer token names: the token itself if it looks like an address."""
        return token.lower() if "@" in token else f"{token.lower()}@{USER_DOMAIN}"

    def mailbox(self, ref: str) -> str | None:
        """The mailbox ``/users/{ref}`` names: an address (created on first sight) or a known user id."""
        ref = ref.lower()
        if "@" in ref:
            return self.ensure_user(ref).email
        with self._lock:
            return next((u.email for u in self._users.values() if u.guid == ref), None)

    def ensure_user(self, email: str) -> _User:
        """Create the mailbox and its default calendar ("Calendar") on first sight."""
        with self._lock:
            user = self._users.get(email)
            if user is None:
                key = self._new_key()
                user = _User(email, user_guid(email), _mailbox_header(email), key)
                user.calendars[key] = _Calendar(key, email, "Calendar", True, self._change_key(user))
                self._users[email] = user
            return user

    def _new_key(self) -> bytes:
        return self._rng.getrandbits(128).to_bytes(16, "big")

    def _change_key(self, user: _User) -> str:
        return base64.b64encode(user.header[:16] + next(self._ck_counter).to_bytes(6, "big")).decode()

    def _user(self, email: str) -> _User:
        return self.ensure_user(email)

    def _calendar(self, user: _User, ref: str | None) -> _Calendar:
        """A live calendar by id, or the default one for ``None``."""
        key = user.default if ref is None else _decode_calendar_id(user.header, ref)
        cal = user.calendars.get(key)
        if cal is None or cal.deleted:
            raise _not_found()
        return cal

    # -- changes ----------------------------------------------------------------------------------

    def _record(self, user: _User, cal: _Calendar, ev: _Event, occ: int | None, change_type: str) -> None:
        """One change: a calendar log entry and, after the write, a notification."""
        entry = (ev.key, occ)
        cal.log.append(entry)
        cal.last_seq[entry] = cal.seq
        etag = None if change_type == "deleted" else f'W/"{ev.change_key}"'
        self._pending.append(_Change(user.email, cal.key, change_type, ev, occ, ev.gen, etag))

    def _touch(self, user: _User, ev: _Event) -> None:
        ev.change_key = self._change_key(user)
        ev.modified = time.time()

    def _place(self, cal: _Calendar, ev: _Event) -> None:
        cal.positions[ev.key] = len(cal.order)
        cal.order.append(ev)

    def _online_info(self, user: _User) -> dict[str, Any]:
        meeting = base64.urlsafe_b64encode(self._rng.getrandbits(192).to_bytes(24, "big")).decode().rstrip("=")
        context = quote(json.dumps({"Tid": TENANT_ID, "Oid": user.guid}, separators=(",", ":")), safe="")
        conference = str(self._rng.randrange(10**8, 10**9))
        return {
            "joinUrl": f"https://teams.microsoft.com/l/meetup-join/19%3ameeting_{meeting}%40thread.v2/0"
            f"?context={context}",
            "conferenceId": conference,
            "tollNumber": "+1 206-555-0100",
            "tollFreeNumbers": [],
            "phones": [],
            "quickDial": f"+12065550100,,{conference}#",
        }

    def _delete_event(self, user: _User, ev: _Event) -> None:
        cal = user.calendars[ev.calendar]
        before = self._instance_keys(ev) if ev.is_series else set()
        ev.deleted = True
        self._record(user, cal, ev, None, "deleted")
        for occ in before:
            ev.dead[(cal.key, occ)] = cal.seq

    def _instance_keys(self, ev: _Event) -> set[int]:
        """Occurrence keys of a series over a bounded horizon, for tracking dropped occurrences."""
        if ev.series is None:
            return set()
        lo = ev.start.instant - timedelta(days=1)
        hi = max(datetime.now(UTC), ev.start.instant) + timedelta(days=DEAD_HORIZON_DAYS)
        keys = {int(s.timestamp()) for s in ev.series.starts(lo, hi, 2000)}
        return (keys | set(ev.exceptions)) - ev.cancelled

    # -- event lookup ---------------------------------------------------------------------------

    def _find(self, user: _User, event_id: str, cal: _Calendar | None) -> tuple[_Event, datetime | None]:
        """(event, None) for a stored item (single, master, exception) or (master, start) for an occurrence."""
        parts = _decode_event_id(user.header, event_id)
        ev = user.events.get(parts.key)
        if ev is None or ev.deleted or (not parts.immutable and parts.gen != ev.gen):
            raise _not_found()
        if cal is not None and ev.calendar != cal.key:
            raise _not_found()
        if parts.occ is None:
            return ev, None
        if not ev.is_series or parts.occ in ev.cancelled:
            raise _not_found()
        exception = ev.exceptions.get(parts.occ)
        if exception is not None:
            return exception, None
        start = datetime.fromtimestamp(parts.occ, UTC)
        if ev.series is None or not ev.series.contains(start):
            raise _not_found()
        return ev, start

    @staticmethod
    def _live_events(cal: _Calendar) -> Iterator[_Event]:
        for i, ev in enumerate(cal.order):
            if ev.calendar == cal.key and not ev.deleted and cal.positions.get(ev.key) == i:
                yield ev

    @staticmethod
    def _instances(ev: _Event, lo: datetime, hi: datetime) -> list[tuple[datetime, _Event, datetime | None]]:
        """What a calendar view shows of one stored event in [lo, hi): (sort start, item, occurrence start)."""
        if not ev.is_series:
            return [(ev.start.instant, ev, None)] if _overlaps(ev.start.instant, ev.end.instant, lo, hi) else []
        assert ev.series is not None
        out: list[tuple[datetime, _Event, datetime | None]] = []
        for start in ev.series.starts(lo, hi):
            key = int(start.timestamp())
            if key not in ev.cancelled and key not in ev.exceptions:
                out.append((start, ev, start))
        for exc in ev.exceptions.values():
            if _overlaps(exc.start.instant, exc.end.instant, lo, hi):
                out.append((exc.start.instant, exc, None))
        out.sort(key=lambda t: int((t[1].original or t[0]).timestamp()) if t[1].master else int(t[0].timestamp()))
        return out

    # -- change notifications -------------------------------------------------------------------

    def _sub_live(self, sub_id: str) -> bool:
        sub = self._subs.get(sub_id)
        return sub is not None and sub.live(time.time()) and not sub.paused

    def _notify(self, changes: list[_Change]) -> None:
        """Under the lock: one change notification per (subscription, change) that matches."""
        now = time.time()
        notes: list[Note] = []
        for sub in list(self._subs.values()):
            if not sub.live(now):
                continue
            for change in changes:
                if change.user != sub.user or change.change_type not in sub.change_types:
                    continue
                if sub.calendar is not None and sub.calendar != change.calendar:
                    continue
                if sub.paused:
                    sub.skipped += 1
                    continue
                sub.notified += 1
                notes.append(Note(sub.url, self._notification_item(sub, change), "change", sub.id))
        if notes:
            self.push.enqueue(notes)

    def _notification_item(self, sub: _Subscription, change: _Change) -> dict[str, Any]:
        user = self._users[sub.user]
        event_id = _encode_event_id(user.header, change.ev.key, change.gen, sub.immutable, change.occ)
        resource = f"Users/{user.guid}/Events/{event_id}"
        data: dict[str, Any] = {"@odata.type": "#Microsoft.Graph.Event", "@odata.id": resource}
        if change.etag is not None:
            data["@odata.etag"] = change.etag
        data["id"] = event_id
        return {
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": _fmt_ts(sub.expiration),
            "changeType": change.change_type,
            "resource": resource,
            "resourceData": data,
            "clientState": sub.client_state,
            "tenantId": TENANT_ID,
        }
