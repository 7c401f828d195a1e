"""Events: get, create (transactionId de-duplication), PATCH with If-Match, delete, cancel, the
plain lists (/events, /calendarView, /instances), and the admin's Outlook-side moves and cancels.

Conditional updates answer 412 ``ErrorIrresolvableConflict`` as documented
(``../shared/reference/provider-semantics.md`` 2.3).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from calsync.emulators.graph.errors import GraphError, _bad, _conflict_412, _not_found
from calsync.emulators.graph.fields import _check_times, _checked_fields, _ical_uid
from calsync.emulators.graph.params import _Params, _window
from calsync.emulators.graph.recurrence import _check_recurrence, _Series
from calsync.emulators.graph.render import _Render
from calsync.emulators.graph.state import (
    API_PREFIX,
    _Calendar,
    _Event,
    _occ_key,
    _User,
    _View,
)
from calsync.emulators.graph.times import _check_when, _fmt_instant, _When

LIST_PAGE_DEFAULT = 10  # documented default page of /events and /calendarView
LIST_PAGE_MAX = 1000


class _Events(_Render):
    """Events of a mailbox, one at a time, and the plain (non-delta) lists."""

    def get_event(self, view: _View, event_id: str, cal_ref: str | None, scoped: bool) -> dict[str, Any]:
        with self._lock:
            cal = self._calendar(view.user, cal_ref) if scoped else None
            ev, occ = self._find(view.user, event_id, cal)
            return self._event_json(view, ev, occ)

    # -- writes ---------------------------------------------------------------------------------

    def create_event(self, view: _View, cal_ref: str | None, body: dict[str, Any]) -> dict[str, Any]:
        fields = _checked_fields(body)
        with self._changes():
            user = view.user
            cal = self._calendar(user, cal_ref)
            tid = fields.get("transactionId")
            if tid is not None:
                existing = self._by_transaction(user, tid)
                if existing is not None:
                    if self.switches["transaction_id_duplicate"] == "conflict":
                        raise GraphError(
                            409, "ErrorDuplicateTransactionId", "An event with the same transactionId already exists."
                        )
                    return self._event_json(view, existing)
            ev = self._new_event(user, cal, fields)
            self._record(user, cal, ev, None, "created")
            return self._event_json(view, ev)

    def _by_transaction(self, user: _User, tid: str) -> _Event | None:
        key = user.transactions.get(tid)
        ev = user.events.get(key) if key is not None else None
        return ev if ev is not None and not ev.deleted else None

    def _new_event(self, user: _User, cal: _Calendar, fields: dict[str, Any]) -> _Event:
        if "start" not in fields or "end" not in fields:
            raise _bad(
                "At least one property failed validation: start and end are required.", "ErrorPropertyValidationFailure"
            )
        start, end = _check_when(fields.pop("start"), "start"), _check_when(fields.pop("end"), "end")
        _check_times(start, end, bool(fields.get("isAllDay")))
        recurrence = _check_recurrence(fields.pop("recurrence", None))
        now = time.time()
        key = self._new_key()
        ev = _Event(
            key,
            cal.key,
            {},
            start,
            end,
            now,
            now,
            self._change_key(user),
            _ical_uid(key),
            transaction_id=fields.pop("transactionId", None),
        )
        self._apply_fields(user, ev, fields)
        self._set_recurrence(ev, recurrence)
        user.events[key] = ev
        if ev.transaction_id is not None:
            user.transactions[ev.transaction_id] = key
        self._place(cal, ev)
        return ev

    def _apply_fields(self, user: _User, ev: _Event, fields: dict[str, Any]) -> None:
        ev.data.update(fields)
        if "location" in fields:
            loc = fields["location"]
            ev.data["locations"] = [loc] if loc.get("displayName") else []
        if ev.data.get("isOnlineMeeting") and ev.online is None:
            ev.online = self._online_info(user)
        if not ev.data.get("isOnlineMeeting"):
            ev.online = None

    @staticmethod
    def _set_recurrence(ev: _Event, recurrence: dict[str, Any] | None) -> None:
        if recurrence is None:
            ev.data.pop("recurrence", None)
            ev.series = None
            return
        if not recurrence["range"]["recurrenceTimeZone"]:
            recurrence["range"]["recurrenceTimeZone"] = ev.start.tz_name
        ev.data["recurrence"] = recurrence
        ev.series = _Series(recurrence, ev.start, ev.end)

    def update_event(
        self, view: _View, event_id: str, cal_ref: str | None, scoped: bool, body: dict[str, Any], if_match: str | None
    ) -> dict[str, Any]:
        fields = _checked_fields(body)
        with self._changes():
            user = view.user
            cal = self._calendar(user, cal_ref) if scoped else None
            ev, occ = self._find(user, event_id, cal)
            self._precondition(user, ev, if_match)
            root = ev.master or ev
            if "transactionId" in fields and fields.pop("transactionId") != root.transaction_id:
                raise _bad("The transactionId of an event cannot be changed after it is created.")
            if occ is not None or ev.master is not None:
                target = self._update_instance(user, ev, occ, fields)
            else:
                target = self._update_stored(user, ev, fields)
            return self._event_json(view, target)

    def _precondition(self, user: _User, ev: _Event, if_match: str | None) -> None:
        """If-Match against the current @odata.etag; the spurious switch models Exchange's own bump."""
        if if_match is None:
            return
        if self.switches["spurious_412_count"] > 0:
            self.switches["spurious_412_count"] -= 1
            self._touch(user, ev)
            cal = user.calendars[(ev.master or ev).calendar]
            self._record(user, cal, ev.master or ev, _occ_key(ev), "updated")
        current = f'W/"{ev.change_key}"'
        candidates = [c.strip() for c in if_match.split(",")]
        if not any(c == "*" or c == current or c.removeprefix("W/") == current.removeprefix("W/") for c in candidates):
            raise _conflict_412()

    def _update_stored(self, user: _User, ev: _Event, fields: dict[str, Any]) -> _Event:
        """PATCH a single event or a series master (time or pattern changes drop its exceptions)."""
        start = _check_when(fields.pop("start"), "start") if "start" in fields else ev.start
        end = _check_when(fields.pop("end"), "end") if "end" in fields else ev.end
        all_day = fields.get("isAllDay", ev.data.get("isAllDay", False))
        _check_times(start, end, bool(all_day))
        has_rec = "recurrence" in fields
        recurrence = _check_recurrence(fields.pop("recurrence")) if has_rec else ev.data.get("recurrence")
        cal = user.calendars[ev.calendar]
        reshaped = has_rec or start != ev.start or end != ev.end
        before = self._instance_keys(ev) if reshaped and ev.is_series else set()
        ev.start, ev.end = start, end
        self._apply_fields(user, ev, fields)
        if reshaped:
            self._set_recurrence(ev, recurrence)
            ev.exceptions.clear()
            ev.cancelled.clear()
        self._touch(user, ev)
        self._record(user, cal, ev, None, "updated")
        for occ in before - (self._instance_keys(ev) if ev.is_series else set()):
            ev.dead[(cal.key, occ)] = cal.seq
        return ev

    def _update_instance(self, user: _User, ev: _Event, occ: datetime | None, fields: dict[str, Any]) -> _Event:
        """PATCH an occurrence (it becomes an exception) or an existing exception."""
        if "recurrence" in fields:
            raise _bad("The recurrence of an occurrence or exception cannot be set.", "ErrorCalendarInvalidRecurrence")
        master = ev.master or ev
        if occ is not None:
            duration = master.series.duration if master.series else timedelta()
            local_start = occ.astimezone(master.start.zone).replace(tzinfo=None)
            local_end = (occ + duration).astimezone(master.end.zone).replace(tzinfo=None)
            ev = _Event(
                master.key,
                master.calendar,
                {k: v for k, v in master.data.items() if k != "recurrence"},
                _When(local_start, master.start.tz_name, master.start.zone),
                _When(local_end, master.end.tz_name, master.end.zone),
                time.time(),
                time.time(),
                master.change_key,
                master.ical_uid,
                master=master,
                original=occ,
                online=master.online,
            )
            master.exceptions[int(occ.timestamp())] = ev
        start = _check_when(fields.pop("start"), "start") if "start" in fields else ev.start
        end = _check_when(fields.pop("end"), "end") if "end" in fields else ev.end
        _check_times(start, end, bool(fields.get("isAllDay", ev.data.get("isAllDay", False))))
        ev.start, ev.end = start, end
        self._apply_fields(user, ev, fields)
        self._touch(user, ev)
        self._record(user, user.calendars[master.calendar], master, _occ_key(ev), "updated")
        return ev

    def delete_event(self, email: str, event_id: str, cal_ref: str | None, scoped: bool, if_match: str | None) -> None:
        with self._changes():
            user = self._user(email)
            cal = self._calendar(user, cal_ref) if scoped else None
            ev, occ = self._find(user, event_id, cal)
            self._precondition(user, ev, if_match)
            if occ is None and ev.master is None:
                self._delete_event(user, ev)
                return
            master = ev.master or ev
            key = int(occ.timestamp()) if occ is not None else _occ_key(ev)
            assert key is not None
            master.exceptions.pop(key, None)
            master.cancelled.add(key)
            self._record(user, user.calendars[master.calendar], master, key, "deleted")

    def cancel_event(self, email: str, event_id: str) -> None:
        """POST /events/{id}/cancel by the organizer: the event leaves the organizer's calendar."""
        self.delete_event(email, event_id, None, False, None)

    # -- lists ----------------------------------------------------------------------------------

    def list_events(self, view: _View, cal_ref: str | None, params: _Params, path: str) -> dict[str, Any]:
        """Singles and series masters of a calendar, in creation order, $top/$skip paged."""
        top = params.int("$top", 1, LIST_PAGE_MAX) or LIST_PAGE_DEFAULT
        skip = params.int("$skip", 0, 10**9) or 0
        with self._lock:
            cal = self._calendar(view.user, cal_ref)
            live = list(self._live_events(cal))
            page = [self._event_json(view, ev) for ev in live[skip : skip + top]]
            context = f"{view.base}{API_PREFIX}/$metadata#users('{quote(view.user.email)}')/events"
            out: dict[str, Any] = {"@odata.context": context, "value": page}
            if skip + top < len(live):
                out["@odata.nextLink"] = f"{view.base}{API_PREFIX}{path}?$top={top}&$skip={skip + top}"
            return out

    def calendar_view(self, view: _View, cal_ref: str | None, params: _Params, path: str) -> dict[str, Any]:
        """Occurrences, exceptions and singles in a window, ordered by start, $top/$skip paged."""
        lo, hi = _window(params)
        top = params.int("$top", 1, LIST_PAGE_MAX) or LIST_PAGE_DEFAULT
        skip = params.int("$skip", 0, 10**9) or 0
        with self._lock:
            cal = self._calendar(view.user, cal_ref)
            items: list[tuple[datetime, str, _Event, datetime | None]] = []
            for ev in self._live_events(cal):
                for start, target, occ in self._instances(ev, lo, hi):
                    items.append((start, target.change_key, target, occ))
            items.sort(key=lambda t: (t[0], t[1]))
            page = [self._event_json(view, t[2], t[3]) for t in items[skip : skip + top]]
            out: dict[str, Any] = {
                "@odata.context": f"{view.base}{API_PREFIX}/$metadata#Collection(event)",
                "value": page,
            }
            if skip + top < len(items):
                out["@odata.nextLink"] = (
                    f"{view.base}{API_PREFIX}{path}?startDateTime={quote(_fmt_instant(lo))}"
                    f"&endDateTime={quote(_fmt_instant(hi))}&$top={top}&$skip={skip + top}"
                )
            return out

    def list_instances(self, view: _View, event_id: str, params: _Params, path: str) -> dict[str, Any]:
        lo, hi = _window(params)
        with self._lock:
            ev, occ = self._find(view.user, event_id, None)
            if occ is not None or not ev.is_series:
                return {"@odata.context": f"{view.base}{API_PREFIX}/$metadata#Collection(event)", "value": []}
            items = sorted(self._instances(ev, lo, hi), key=lambda t: t[0])
            return {
                "@odata.context": f"{view.base}{API_PREFIX}/$metadata#Collection(event)",
                "value": [self._event_json(view, target, o) for _, target, o in items],
            }

    # -- admin event operations -----------------------------------------------------------------

    def move_event(self, email: str, event_id: str, cal_id: str) -> dict[str, Any]:
        """Admin: the user moves an event to another calendar in Outlook; its regular id changes."""
        with self._changes():
            user = self._users.get(email)
            if user is None:
                raise _not_found()
            ev, occ = self._find(user, event_id, None)
            if occ is not None or ev.master is not None:
                raise _bad("Only single events and series masters can be moved.")
            target = self._calendar(user, cal_id)
            if target.key == ev.calendar:
                raise _bad("The event is already in that calendar.")
            source = user.calendars[ev.calendar]
            before = self._instance_keys(ev) if ev.is_series else set()
            self._record(user, source, ev, None, "deleted")
            for o in before:
                ev.dead[(source.key, o)] = source.seq
            ev.left_gen[source.key] = ev.gen
            ev.gen += 1
            ev.calendar = target.key
            self._place(target, ev)
            self._touch(user, ev)
            self._record(user, target, ev, None, "created")
            view = _View(user, ZoneInfo("UTC"), "UTC", False, False, "")
            return {
                "id": self._event_id(view, ev),
                "immutableId": self._event_id(_View(user, ZoneInfo("UTC"), "UTC", True, False, ""), ev),
            }

    def cancel_by_organizer(self, email: str, event_id: str) -> None:
        """Admin: the organizer cancelled; this (attendee's) copy gets isCancelled and a 'Canceled:' subject."""
        with self._changes():
            user = self._users.get(email)
            if user is None:
                raise _not_found()
            ev, occ = self._find(user, event_id, None)
            if occ is not None:
                raise _bad("Cancel the series or an exception, not a plain occurrence.")
            ev.is_cancelled = True
            subject = ev.data.get("subject", "")
            if not subject.startswith("Canceled: "):
                ev.data["subject"] = "Canceled: " + subject
            self._touch(user, ev)
            root = ev.master or ev
            self._record(user, user.calendars[root.calendar], root, _occ_key(ev), "updated")
