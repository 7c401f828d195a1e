"""An in-process calendar service and a Provider over it, for fast tests of the engine.

Why: the emulators and real CalDAV servers cost HTTP round trips and seconds per scenario; a
property test that wants thousands of sync steps needs a provider that answers in microseconds,
yet keeps every promise of providers/base.py so what the engine learns from it holds elsewhere.

`MemoryService` is the calendar service: calendars, events, ETags, a change log with sync tokens,
fault switches. Two kinds of callers share it: `MemoryProvider` (what calsync uses: counted,
subject to faults) and the service's own methods (another client changing events; never faulted).

Behaviour, where providers differ:
- Ids: an insert keeps the client's id (as Google and CalDAV do); one held by a live event raises
  AlreadyExists (409). A deleted id is free again (CalDAV's model), so its tombstone only serves
  the change log. An exception of a series is `<series id>_<original start>` (Google's naming).
- Series: CalDAV's EXDATE model. A deleted occurrence is an EXDATE on the master and nothing else
  (no cancelled instance is kept): cancel_occurrence returns None. An exception is an event of its
  own (series_remote_id, original_start); deleting it, or cancelling its occurrence, excludes the
  occurrence on the master too, and a master whose EXDATEs cover an exception drops it. Writing an
  exception over an excluded occurrence brings the occurrence back (the EXDATE goes).
- Sync tokens: `mem:<calendar>:<epoch>:<position>` in a global change log; an incremental listing
  gives every event written after the position (deletions as RemoteDeletion), in the order of
  those writes (`series_first`: exceptions after every series), in pages of `page_size`.
  `invalidate_tokens` bumps the epoch: older tokens raise SyncTokenInvalid (410).
- Listings cover the whole calendar (listing_window None); no push (watch raises, as CalDAV).
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rruleset, rrulestr

from calsync.model import (
    ChangePage,
    EventData,
    RemoteCalendar,
    RemoteChange,
    RemoteDeletion,
    RemoteEvent,
    canonical_instant,
    canonical_time,
    parse_instant,
    utcnow,
)
from calsync.providers.base import (
    AlreadyExists,
    AuthError,
    Capabilities,
    Channel,
    NotFoundError,
    PreconditionFailed,
    ProviderError,
    RateLimited,
    SyncTokenInvalid,
    fetch_each,
)
from calsync.providers.canonical import is_utc_name
from calsync.series_exdates import excluded_starts, exdate_line

T = TypeVar("T")
SCHEME = "mem"  # sync tokens are mem:<calendar>:<epoch>:<position>
METHODS = (
    "list_calendars",
    "list_changes",
    "get_event",
    "fetch_events",
    "insert_event",
    "update_event",
    "delete_event",
    "cancel_occurrence",
    "watch",
    "stop_channel",
)


def error_for_status(status: int, message: str | None = None) -> ProviderError:
    """The error a real provider's client raises for an HTTP status (providers/http.provider_error)."""
    text = message or f"injected {status}"
    if status == 401:
        return AuthError(text, status=status)
    if status in (404, 410):
        return NotFoundError(text, status=status)
    if status == 412:
        return PreconditionFailed(text, status=status)
    if status == 429 or status >= 500:
        return RateLimited(text, status=status)
    return ProviderError(text, status=status)


@dataclass
class Fault:
    """The next `count` calls to `method` ("*": any) raise `error`, after `skip` calls let through.
    `after_commit`: the call does its work first (a write is stored), then raises: the answer lost."""

    method: str
    error: ProviderError
    count: int = 1
    after_commit: bool = False
    skip: int = 0


@dataclass
class _Stored:
    remote_id: str
    data: EventData
    etag: str
    position: int  # where its last write is in the change log
    updated: str
    series_remote_id: str | None = None
    deleted: bool = False


@dataclass
class _Calendar:
    info: RemoteCalendar
    events: dict[str, _Stored] = field(default_factory=dict)
    epoch: int = 0


class MemoryService:
    """The calendar service. Every method takes the lock: the engine lists in a helper thread."""

    def __init__(self, *, series_first: bool = False) -> None:
        """`series_first`: a listing names every series before any exception. By default it lists in
        the order of the last writes, as the protocol allows (an exception may come first)."""
        self.series_first = series_first
        self.lock = threading.RLock()
        self.calendars: dict[str, _Calendar] = {}
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str]] = []  # (method, calendar id) of each provider call
        self.position = 0  # changes stored so far (by anyone): a call that changed nothing adds none
        self._etag = 0

    # --- admin ------------------------------------------------------------------------

    def add_calendar(
        self, name: str, remote_id: str | None = None, *, primary: bool = False, time_zone: str | None = None
    ) -> str:
        with self.lock:
            calendar_id = remote_id or f"cal-{uuid.uuid4().hex[:8]}"
            self.calendars[calendar_id] = _Calendar(
                RemoteCalendar(
                    remote_id=calendar_id, name=name, time_zone=time_zone, primary=primary, access_role="owner"
                )
            )
            return calendar_id

    def invalidate_tokens(self, calendar_id: str | None = None) -> None:
        """Every sync token issued so far for the calendar (or all) is refused from now on."""
        with self.lock:
            for cid, calendar in self.calendars.items():
                if calendar_id in (None, cid):
                    calendar.epoch += 1

    def inject(
        self, method: str, error: ProviderError | int, *, count: int = 1, after_commit: bool = False, skip: int = 0
    ) -> None:
        """A fault switch (see Fault); `error` may be an HTTP status, mapped as the real clients map it."""
        if method != "*" and method not in METHODS:
            raise ValueError(f"unknown provider method {method!r}")
        failure = error_for_status(error) if isinstance(error, int) else error
        with self.lock:
            self.faults.append(Fault(method, failure, count, after_commit, skip))

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def take_fault(self, method: str, calendar_id: str) -> Fault | None:
        """Log one provider call and return the fault it meets, if any (its count goes down)."""
        with self.lock:
            self.log.append((method, calendar_id))
            for fault in self.faults:
                if fault.method not in ("*", method):
                    continue
                if fault.skip:
                    fault.skip -= 1
                    return None
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
            return None

    # --- another client's side (no faults, not counted): these, and insert / update / delete ---

    def edit(self, calendar_id: str, remote_id: str, **changes: Any) -> RemoteEvent:
        """Change some EventData fields of a live event, as another client's editor would."""
        with self.lock:
            current = self._live(calendar_id, remote_id)
            return self.update(calendar_id, remote_id, replace(current.data, **changes), if_match=None)

    def move_occurrence(
        self, calendar_id: str, series_remote_id: str, original_start: str, **changes: Any
    ) -> RemoteEvent:
        """Make (or change) the exception of one occurrence: the occurrence with `changes` applied."""
        with self.lock:
            series = self._live(calendar_id, series_remote_id).data
            instance_id = instance_remote_id(series_remote_id, original_start)
            existing = self.calendar(calendar_id).events.get(instance_id)
            if existing is not None and not existing.deleted:
                base = existing.data
            else:
                base = replace(
                    series,
                    recurrence=None,
                    original_start=original_start,
                    start=original_start,
                    end=_shifted_end(series, original_start),
                )
            return self.insert(calendar_id, replace(base, **changes), series_remote_id=series_remote_id)

    def events(self, calendar_id: str) -> dict[str, RemoteEvent]:
        """Every live event (masters, exceptions, single events) by remote id."""
        with self.lock:
            return {rid: _event(s) for rid, s in self.calendar(calendar_id).events.items() if not s.deleted}

    # --- the service's operations (the provider adds counting and faults) ---------------------

    def listing(self, calendar_id: str, sync_token: str | None) -> tuple[list[RemoteChange], str]:
        """What changed since the token (everything live when None), and the token for now."""
        with self.lock:
            calendar = self.calendar(calendar_id)
            since = -1 if sync_token is None else self._token_position(calendar_id, calendar, sync_token)
            changed = sorted(
                (s for s in calendar.events.values() if s.position > since and not (sync_token is None and s.deleted)),
                key=lambda s: (self.series_first and s.series_remote_id is not None, s.position),
            )
            items: list[RemoteChange] = [
                RemoteDeletion(s.remote_id, proof=f"memory listing since {sync_token}: deleted")
                if s.deleted
                else _event(s)
                for s in changed
            ]
            return items, f"{SCHEME}:{calendar_id}:{calendar.epoch}:{self.position}"

    def read(self, calendar_id: str, remote_id: str) -> RemoteEvent | None:
        with self.lock:
            stored = self.calendar(calendar_id).events.get(remote_id)
            return None if stored is None or stored.deleted else _event(stored)

    def insert(
        self, calendar_id: str, data: EventData, *, remote_id: str | None = None, series_remote_id: str | None = None
    ) -> RemoteEvent:
        with self.lock:
            calendar = self.calendar(calendar_id)
            if data.original_start:
                series_remote_id = series_remote_id or self._series_by_uid(calendar, data.ical_uid)
                return self._put_exception(calendar_id, series_remote_id, data)
            remote_id = remote_id or uuid.uuid4().hex
            existing = calendar.events.get(remote_id)
            if existing is not None and not existing.deleted:
                raise AlreadyExists(f"event {remote_id} already exists", status=409)
            data = replace(data, ical_uid=data.ical_uid or remote_id)
            return _event(self._write(calendar, remote_id, data, None))

    def update(self, calendar_id: str, remote_id: str, data: EventData, *, if_match: str | None) -> RemoteEvent:
        with self.lock:
            calendar = self.calendar(calendar_id)
            current = self._live(calendar_id, remote_id, if_match)
            kept = current.data
            data = replace(data, original_start=kept.original_start, ical_uid=data.ical_uid or kept.ical_uid)
            written = self._write(calendar, remote_id, data, current.series_remote_id)
            if not data.original_start:  # exceptions the master now excludes (or a series no more) go
                excluded = excluded_starts(data.recurrence, data.time_zone)
                for stored in self._exceptions(calendar, remote_id):
                    if not data.recurrence or stored.data.original_start in excluded:
                        self._tombstone(calendar, stored)
            return _event(written)

    def delete(self, calendar_id: str, remote_id: str, *, if_match: str | None = None) -> None:
        """Idempotent: an unknown or deleted id is left as it is. A master takes its exceptions; an
        exception takes its occurrence (an EXDATE on the master)."""
        with self.lock:
            calendar = self.calendar(calendar_id)
            stored = calendar.events.get(remote_id)
            if stored is None or stored.deleted:
                return
            self._live(calendar_id, remote_id, if_match)
            self._tombstone(calendar, stored)
            for exception in self._exceptions(calendar, remote_id):
                self._tombstone(calendar, exception)
            if stored.series_remote_id and stored.data.original_start:
                self._exclude(calendar, stored.series_remote_id, stored.data.original_start)

    def cancel(
        self,
        calendar_id: str,
        series_remote_id: str,
        original_start: str,
        *,
        remote_id: str | None = None,
        if_match: str | None = None,
    ) -> None:
        """Provider.cancel_occurrence in the EXDATE model (see the module docstring)."""
        with self.lock:
            calendar = self.calendar(calendar_id)
            master = calendar.events.get(series_remote_id)
            if master is None or master.deleted:
                return  # a series that is gone is gone with its occurrences
            held = calendar.events.get(remote_id) if remote_id else None
            if if_match is not None:
                guarded = held if held is not None and not held.deleted else master if remote_id is None else None
                if guarded is not None and guarded.etag != if_match:
                    raise PreconditionFailed(f"{guarded.remote_id} changed", status=412)
            original = canonical_time(original_start, len(original_start) == 10)
            for exception in self._exceptions(calendar, series_remote_id):
                if exception.data.original_start == original or exception is held:
                    self._tombstone(calendar, exception)
            if occurs(master.data, original):
                self._exclude(calendar, series_remote_id, original)

    def delete_occurrence(self, calendar_id: str, series_remote_id: str, original_start: str) -> None:
        """Another client deletes one occurrence (plain or moved): the EXDATE model's way."""
        self.cancel(calendar_id, series_remote_id, original_start)

    # --- internals (called with the lock held) ------------------------------------------------

    def calendar(self, calendar_id: str) -> _Calendar:
        calendar = self.calendars.get(calendar_id)
        if calendar is None:
            raise NotFoundError(f"no calendar {calendar_id!r}", status=404)
        return calendar

    def _live(self, calendar_id: str, remote_id: str, if_match: str | None = None) -> _Stored:
        stored = self.calendar(calendar_id).events.get(remote_id)
        if stored is None or stored.deleted:
            raise NotFoundError(f"no event {remote_id!r} in {calendar_id!r}", status=404)
        if if_match is not None and if_match != stored.etag:
            raise PreconditionFailed(f"{remote_id} changed (ETag {stored.etag}, not {if_match})", status=412)
        return stored

    def _token_position(self, calendar_id: str, calendar: _Calendar, token: str) -> int:
        prefix, _, rest = token.partition(":")
        cid, _, tail = rest.rpartition(":")
        cid, _, epoch = cid.rpartition(":")
        if (
            prefix != SCHEME
            or cid != calendar_id
            or epoch != str(calendar.epoch)
            or not tail.isdigit()
            or int(tail) > self.position
        ):
            raise SyncTokenInvalid(
                f"sync token {token[:60]!r} is no longer valid", status=410, reason="fullSyncRequired"
            )
        return int(tail)

    def _write(self, calendar: _Calendar, remote_id: str, data: EventData, series: str | None) -> _Stored:
        self.position += 1
        self._etag += 1
        own = {"memory": data.extra["memory"]} if "memory" in (data.extra or {}) else {}
        stored = _Stored(
            remote_id,
            copy.deepcopy(replace(data, extra=own)),
            f'"m{self._etag}"',
            self.position,
            canonical_instant(utcnow()),
            series,
        )
        calendar.events[remote_id] = stored
        return stored

    def _tombstone(self, calendar: _Calendar, stored: _Stored) -> None:
        self.position += 1
        stored.deleted, stored.position = True, self.position

    def _exceptions(self, calendar: _Calendar, series_remote_id: str) -> list[_Stored]:
        return [s for s in calendar.events.values() if s.series_remote_id == series_remote_id and not s.deleted]

    def _series_by_uid(self, calendar: _Calendar, uid: str | None) -> str:
        for stored in calendar.events.values():
            if uid and not stored.deleted and stored.data.recurrence and stored.data.ical_uid == uid:
                return stored.remote_id
        raise ProviderError(f"no series with UID {uid!r} for an instance", status=409, reason="series-not-found")

    def _put_exception(self, calendar_id: str, series_remote_id: str, data: EventData) -> RemoteEvent:
        """Write an exception over the series' occurrence (again: harmless); an excluded occurrence
        comes back. No such occurrence at all: NotFoundError, as a read of that instance would."""
        calendar = self.calendar(calendar_id)
        master = self._live(calendar_id, series_remote_id)
        assert data.original_start is not None
        original = canonical_time(data.original_start, len(data.original_start) == 10)
        if not occurs(master.data, original):
            raise NotFoundError(f"{series_remote_id} has no occurrence at {original}", status=404)
        excluded = excluded_starts(master.data.recurrence, master.data.time_zone)
        if original in excluded:
            self._write(calendar, series_remote_id, _with_exdates(master.data, excluded - {original}), None)
        data = replace(data, original_start=original, recurrence=None, ical_uid=master.data.ical_uid)
        return _event(self._write(calendar, instance_remote_id(series_remote_id, original), data, series_remote_id))

    def _exclude(self, calendar: _Calendar, series_remote_id: str, original: str) -> None:
        master = calendar.events.get(series_remote_id)
        if master is None or master.deleted:
            return
        excluded = excluded_starts(master.data.recurrence, master.data.time_zone)
        if original not in excluded:
            self._write(calendar, series_remote_id, _with_exdates(master.data, excluded | {original}), None)


class MemoryProvider:
    """One account's client of a MemoryService: the Provider protocol, counted and faultable."""

    name = "memory"
    # no watch channels (the scheduler polls); exceptions are events of their own, listed when they change
    capabilities = Capabilities(push=False)

    def __init__(self, service: MemoryService, *, page_size: int = 100) -> None:
        self.service = service
        self.page_size = max(1, page_size)
        self.request_count = 0

    def close(self) -> None:
        """Nothing to release: the service outlives its clients (a pass closes them at its end)."""

    def _call(self, method: str, calendar_id: str, work: Callable[[], T]) -> T:
        fault = self.service.take_fault(method, calendar_id)
        with self.service.lock:
            self.request_count += 1
        if fault is not None and not fault.after_commit:
            raise copy.copy(fault.error)
        result = work()
        if fault is not None:
            raise copy.copy(fault.error)
        return result

    def list_calendars(self) -> list[RemoteCalendar]:
        def work() -> list[RemoteCalendar]:
            with self.service.lock:
                return [copy.copy(c.info) for c in self.service.calendars.values()]

        return self._call("list_calendars", "", work)

    def list_changes(self, calendar_id: str, sync_token: str | None) -> Iterator[ChangePage]:
        """One snapshot, taken when the first page is asked for; each page is one (faultable) call."""
        full = sync_token is None
        items, token = self._call("list_changes", calendar_id, lambda: self.service.listing(calendar_id, sync_token))
        chunks = [items[at : at + self.page_size] for at in range(0, len(items), self.page_size)] or [[]]
        for number, chunk in enumerate(chunks):
            if number:
                self._call("list_changes", calendar_id, lambda: None)
            last = number == len(chunks) - 1
            yield ChangePage(items=chunk, full=full, last=last, sync_token=token if last else None)

    def get_event(self, calendar_id: str, remote_id: str) -> RemoteEvent | None:
        """None for an id that is unknown or deleted (as Google, Graph and CalDAV answer 404)."""
        return self._call("get_event", calendar_id, lambda: self.service.read(calendar_id, remote_id))

    def listing_window(self) -> tuple[datetime, datetime] | None:
        return None  # a listing covers the whole calendar: what it reports deleted is gone

    def fetch_events(self, calendar_id: str, remote_ids: Sequence[str]) -> dict[str, RemoteEvent | None]:
        """One call for all ids (a batch read), None only for those gone."""

        def work() -> dict[str, RemoteEvent | None]:
            self.service.calendar(calendar_id)  # an unknown calendar raises, rather than None for all
            return fetch_each(self.service.read, calendar_id, remote_ids)

        return self._call("fetch_events", calendar_id, work)

    def insert_event(
        self, calendar_id: str, data: EventData, *, remote_id: str | None = None, series_remote_id: str | None = None
    ) -> RemoteEvent:
        return self._call(
            "insert_event",
            calendar_id,
            lambda: self.service.insert(calendar_id, data, remote_id=remote_id, series_remote_id=series_remote_id),
        )

    def update_event(self, calendar_id: str, remote_id: str, data: EventData, *, if_match: str | None) -> RemoteEvent:
        return self._call(
            "update_event", calendar_id, lambda: self.service.update(calendar_id, remote_id, data, if_match=if_match)
        )

    def withdraw_create(self, calendar_id: str, data: EventData, *, remote_id: str) -> None:
        """The id is ours: delete whatever the lost create left at it (deleting is idempotent)."""
        self.delete_event(calendar_id, remote_id, if_match=None)

    def delete_event(self, calendar_id: str, remote_id: str, *, if_match: str | None) -> None:
        self._call("delete_event", calendar_id, lambda: self.service.delete(calendar_id, remote_id, if_match=if_match))

    def cancel_occurrence(
        self,
        calendar_id: str,
        series_remote_id: str,
        original_start: str,
        *,
        remote_id: str | None = None,
        if_match: str | None = None,
    ) -> RemoteEvent | None:
        """An EXDATE on the master, the exception (if any) deleted; nothing is kept of the
        occurrence, so None. Already excluded, or no such occurrence: no write."""
        self._call(
            "cancel_occurrence",
            calendar_id,
            lambda: self.service.cancel(
                calendar_id, series_remote_id, original_start, remote_id=remote_id, if_match=if_match
            ),
        )
        return None

    def watch(
        self, calendar_id: str, channel_id: str, address: str, token: str, ttl_seconds: int | None = None
    ) -> Channel:
        return self._call("watch", calendar_id, _no_push)

    def stop_channel(self, channel_id: str, resource_id: str) -> None:
        self._call("stop_channel", "", _no_push)


def _no_push() -> Channel:
    raise ProviderError("push not supported by the memory provider")


# --- values and series -----------------------------------------------------------------------


def instance_remote_id(series_remote_id: str, original_start: str) -> str:
    """`<series id>_<start>`: 20261201T090000Z, or 20261201 for an all-day occurrence."""
    return f"{series_remote_id}_{original_start.replace('-', '').replace(':', '')}"


def _event(stored: _Stored) -> RemoteEvent:
    return RemoteEvent(
        remote_id=stored.remote_id,
        etag=stored.etag,
        data=copy.deepcopy(stored.data),
        series_remote_id=stored.series_remote_id,
        updated=stored.updated,
    )


def _with_exdates(data: EventData, starts: set[str]) -> EventData:
    lines = [line for line in data.recurrence or [] if not line.upper().startswith("EXDATE")]
    return replace(data, recurrence=[*lines, exdate_line(starts)] if starts else lines)


def _zone(name: str | None) -> tzinfo:
    if not name or is_utc_name(name):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return UTC


def _boundary(text: str) -> datetime:
    """A canonical boundary as an instant (a date: its midnight, UTC)."""
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
    return parse_instant(text)


def _expand(data: EventData, use: Callable[[rruleset, Callable[[datetime], datetime]], T]) -> T | None:
    """`use(rules, as_rule_time)` over the series' RRULEs (EXDATEs left out), counted from its first
    start as the rule sees it (wall time in its zone); None when they cannot be expanded here. UTC
    UNTILs need an aware start, date UNTILs a naive one: both are tried."""
    zone = UTC if data.all_day else _zone(data.time_zone)
    lines = "\n".join(line for line in data.recurrence or [] if line.upper().startswith(("RRULE", "RDATE")))
    for aware in (True, False):

        def convert(moment: datetime, aware: bool = aware) -> datetime:
            wall = moment.astimezone(zone)
            return wall if aware else wall.replace(tzinfo=None)

        try:
            rules = rrulestr(lines, dtstart=convert(_boundary(data.start)), forceset=True)
            assert isinstance(rules, rruleset)
            return use(rules, convert)
        except (ValueError, TypeError):
            continue
    return None


def starts_between(data: EventData, lo: datetime, hi: datetime) -> list[str]:
    """Canonical starts of the rule's occurrences (EXDATEs not applied) in [lo, hi)."""
    zone = UTC if data.all_day else _zone(data.time_zone)
    found = _expand(data, lambda rules, at: rules.between(at(lo), at(hi - timedelta(microseconds=1)), inc=True))
    moments = [m if m.tzinfo else m.replace(tzinfo=zone) for m in found or []]
    return [m.date().isoformat() if data.all_day else canonical_instant(m) for m in moments]


def occurs(data: EventData, original_start: str) -> bool:
    """Whether the series' rule yields an occurrence at `original_start` (EXDATEs not applied). A
    rule this reader cannot expand is trusted: the service never refuses what it cannot judge."""
    if not data.recurrence:
        return False
    target = _boundary(original_start)
    found = _expand(data, lambda rules, at: rules.after(at(target), inc=True) == at(target))
    return True if found is None else found


def _shifted_end(series: EventData, original_start: str) -> str:
    """The end of the occurrence at `original_start`: the series' own duration later."""
    end = _boundary(original_start) + (_boundary(series.end) - _boundary(series.start))
    return end.date().isoformat() if series.all_day else canonical_instant(end)
