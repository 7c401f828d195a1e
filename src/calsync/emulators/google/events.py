"""events.get/insert/import/update/patch/delete, with ETag preconditions and conference data.

Conference data is honoured only with ``conferenceDataVersion=1``, and Meet data is copied only
with the signature this emulator issued, as Google documents
(https://developers.google.com/calendar/api/guides/create-events#conferencing).
"""

from __future__ import annotations

import time
from typing import Any

from calsync.emulators.common import rfc3339_ms as _fmt_ts
from calsync.emulators.google.errors import (
    ApiError,
    _deleted,
    _invalid,
    _not_found,
    _NotModified,
    _precondition_failed,
    _required,
)
from calsync.emulators.google.fields import (
    _SCHEDULE_FIELDS,
    _check_conference,
    _check_times,
    _fresh_data,
    _patched_data,
    _Times,
)
from calsync.emulators.google.params import Params, _conference_version
from calsync.emulators.google.render import _Render
from calsync.emulators.google.state import _CLIENT_ID_RE, _Calendar, _Event

_MEET_ICON = (
    "https://fonts.gstatic.com/s/i/productlogos/meet_2020q4/v6/web-512dp/logo_meet_2020q4_color_2x_web_512dp.png"
)


class _Events(_Render):
    """Single events, series and their exceptions: reads and writes of one event at a time."""

    def get_event(self, user: str, cal_ref: str, event_id: str, if_none_match: str | None = None) -> dict[str, Any]:
        """events.get: deleted events come back with status cancelled; If-None-Match may give 304."""
        with self._lock:
            cal = self._calendar(user, cal_ref)
            ev = cal.events.get(event_id)
            if ev is not None:
                etag, result = ev.etag, self._event_dict(cal, ev)
            else:
                virtual = self._virtual(cal, event_id)
                if virtual is None:
                    raise _not_found()
                etag, result = virtual[0].etag, self._instance_dict(cal, virtual[0], virtual[1], True)
            if if_none_match is not None and _etag_matches(if_none_match, etag):
                raise _NotModified(etag)
            return result

    # -- event writes ---------------------------------------------------------------------------

    def insert_event(self, user: str, cal_ref: str, body: Any, params: Params, import_: bool = False) -> dict[str, Any]:
        """events.insert and events.import (import updates the event with the same iCalUID)."""
        with self._changes():
            cal = self._calendar(user, cal_ref)
            if not isinstance(body, dict):
                raise _invalid("Invalid event body.")
            version = _conference_version(params)
            ical_uid = body.get("iCalUID")
            if ical_uid is not None and (not isinstance(ical_uid, str) or not ical_uid):
                raise _invalid("Invalid iCalUID value.", "iCalUID")
            if import_ and ical_uid is None:
                raise _required("Missing iCalUID.", "iCalUID")
            if import_ and ical_uid in cal.ical_index:
                existing = cal.events[cal.ical_index[ical_uid]]
                return self._write(cal, existing, body, version, patch=False, import_=True)
            event_id = self._checked_new_id(cal, body.get("id"))
            if not import_ and ical_uid is not None and ical_uid in cal.ical_index:
                raise ApiError(409, "duplicate", "The requested identifier already exists.")
            data = _fresh_data(body)
            times = _check_times(data, cal.zone)
            now = time.time()
            request_ids: set[str] = set()
            self._apply_conference(data, request_ids, body, version, mode="insert")
            ev = _Event(
                event_id,
                -1,
                data,
                ical_uid or f"{event_id}@google.com",
                _fmt_ts(now),
                {"email": user, "self": True},
                self._organizer(cal, body if import_ else None),
                sequence=self._client_sequence(body, 0),
                conference_request_ids=request_ids,
            )
            self._apply_times(ev, times)
            self._store_new(cal, ev, now)
            return self._event_dict(cal, ev)

    def _checked_new_id(self, cal: _Calendar, wanted: Any) -> str:
        if wanted is None:
            return self._new_event_id(cal)
        if not isinstance(wanted, str) or not _CLIENT_ID_RE.match(wanted):
            raise _invalid("Invalid resource id value.", "id")
        if wanted in cal.events:
            raise ApiError(409, "duplicate", "The requested identifier already exists.")
        return wanted

    @staticmethod
    def _client_sequence(body: dict[str, Any], current: int) -> int:
        value = body.get("sequence")
        if value is None:
            return current
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31:
            raise _invalid("Invalid sequence value.", "sequence")
        return max(value, current)

    @staticmethod
    def _apply_times(ev: _Event, times: _Times) -> None:
        ev.start_ts, ev.end_ts, ev.span_end_ts = times.start_ts, times.end_ts, times.span_end_ts
        ev.compiled = times.compiled

    def write_event(
        self, user: str, cal_ref: str, event_id: str, body: Any, params: Params, if_match: str | None, patch: bool
    ) -> dict[str, Any]:
        """events.update (PUT) and events.patch; an instance id creates the exception on first write."""
        with self._changes():
            cal = self._calendar(user, cal_ref)
            if not isinstance(body, dict):
                raise _invalid("Invalid event body.")
            version = _conference_version(params)
            ev = cal.events.get(event_id)
            fresh = None
            if ev is None:
                virtual = self._virtual(cal, event_id)
                if virtual is None:
                    raise _not_found()
                fresh = self._materialize(cal, virtual[0], virtual[1], event_id)
                ev = fresh
            if if_match is not None and not _etag_matches(if_match, ev.etag):
                raise _precondition_failed()
            return self._write(cal, ev, body, version, patch=patch, import_=False, fresh=fresh is not None)

    def _write(
        self,
        cal: _Calendar,
        ev: _Event,
        body: dict[str, Any],
        version: int,
        patch: bool,
        import_: bool,
        fresh: bool = False,
    ) -> dict[str, Any]:
        """Apply an update/patch/import body to ``ev``; everything is validated before anything changes."""
        data = _patched_data(ev.data, body) if patch else _fresh_data(body)
        if ev.recurring_event_id is not None:
            data.pop("recurrence", None)  # an exception cannot become a series
        times = _check_times(data, cal.zone)
        if "conferenceData" in ev.data:
            data["conferenceData"] = ev.data["conferenceData"]
        request_ids = set(ev.conference_request_ids)
        self._apply_conference(data, request_ids, body, version, mode="patch" if patch else "update")
        changed = any(ev.data.get(k) != data.get(k) for k in _SCHEDULE_FIELDS)
        sequence = self._client_sequence(body, ev.sequence + (1 if changed else 0))
        organizer = self._organizer(cal, body) if import_ and "organizer" in body else ev.organizer
        was_cancelled = ev.cancelled and not fresh
        ev.data, ev.conference_request_ids, ev.sequence, ev.organizer = data, request_ids, sequence, organizer
        self._apply_times(ev, times)
        now = time.time()
        if fresh:
            self._store_new(cal, ev, now)
        else:
            self._touch(cal, ev, now)
        if ev.cancelled and not was_cancelled and ev.is_series:
            self._cancel_exceptions(cal, ev, now)
        return self._event_dict(cal, ev)

    def delete_event(self, user: str, cal_ref: str, event_id: str, if_match: str | None) -> None:
        """events.delete: leaves a cancelled tombstone; deleting a series cancels its exceptions."""
        with self._changes():
            cal = self._calendar(user, cal_ref)
            ev = cal.events.get(event_id)
            now = time.time()
            if ev is None:
                virtual = self._virtual(cal, event_id)
                if virtual is None:
                    raise _not_found()
                if if_match is not None and not _etag_matches(if_match, virtual[0].etag):
                    raise _precondition_failed()
                fresh = self._materialize(cal, virtual[0], virtual[1], event_id)
                fresh.data["status"] = "cancelled"
                self._store_new(cal, fresh, now)
                return
            if ev.cancelled:
                raise _deleted()
            if if_match is not None and not _etag_matches(if_match, ev.etag):
                raise _precondition_failed()
            ev.data = {**ev.data, "status": "cancelled"}
            self._touch(cal, ev, now)
            if ev.is_series:
                self._cancel_exceptions(cal, ev, now)

    def _cancel_exceptions(self, cal: _Calendar, series: _Event, now: float) -> None:
        for exc_id in cal.exceptions.get(series.id, {}).values():
            exc = cal.events[exc_id]
            if not exc.cancelled:
                exc.data = {**exc.data, "status": "cancelled"}
                self._touch(cal, exc, now)

    # -- conference data ------------------------------------------------------------------------

    def _apply_conference(
        self, data: dict[str, Any], request_ids: set[str], body: dict[str, Any], version: int, mode: str
    ) -> None:
        """conferenceData is honoured only with conferenceDataVersion=1, as Google documents."""
        if version != 1:
            return
        if "conferenceData" not in body:
            if mode == "update":
                data.pop("conferenceData", None)
            return
        incoming = body["conferenceData"]
        if not incoming:
            data.pop("conferenceData", None)
            return
        if not isinstance(incoming, dict):
            raise _invalid("Invalid conference data.")
        request = incoming.get("createRequest")
        if isinstance(request, dict):
            self._conference_create(data, request_ids, request)
        else:
            self._conference_copy(data, incoming)

    def _conference_create(self, data: dict[str, Any], request_ids: set[str], request: dict[str, Any]) -> None:
        """createRequest: a Meet conference for hangoutsMeet; a repeated requestId is ignored."""
        request_id = request.get("requestId")
        if not isinstance(request_id, str) or not request_id:
            raise _required("Missing conference create request id.")
        if request_id in request_ids:
            return
        request_ids.add(request_id)
        key = request.get("conferenceSolutionKey")
        kind = key.get("type") if isinstance(key, dict) else None
        outcome = self.switches["conference_create_status"] if kind == "hangoutsMeet" else "failure"
        create = {
            "requestId": request_id,
            "conferenceSolutionKey": {"type": kind if isinstance(kind, str) else ""},
            "status": {"statusCode": outcome},
        }
        if outcome != "success":
            data["conferenceData"] = {"createRequest": create}
            return
        code = "-".join("".join(self._rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n)) for n in (3, 4, 3))
        data["conferenceData"] = {
            "createRequest": create,
            "entryPoints": [
                {
                    "entryPointType": "video",
                    "uri": f"https://meet.google.com/{code}",
                    "label": f"meet.google.com/{code}",
                }
            ],
            "conferenceSolution": {"key": {"type": "hangoutsMeet"}, "name": "Google Meet", "iconUri": _MEET_ICON},
            "conferenceId": code,
            "signature": self._signer.sign_text("meet:" + code),
        }

    def _conference_copy(self, data: dict[str, Any], incoming: dict[str, Any]) -> None:
        """Copy conference data as given; Meet data is only accepted with the signature we issued."""
        conference = _check_conference(incoming)
        if conference["conferenceSolution"]["key"]["type"] == "hangoutsMeet":
            code = conference.get("conferenceId", "")
            if conference.get("signature") != self._signer.sign_text("meet:" + code):
                return  # Meet data without our signature is not copied
        data["conferenceData"] = conference


def _etag_matches(header: str, etag: str) -> bool:
    """If-Match / If-None-Match comparison: ``*`` or any listed ETag equal to the current one."""
    candidates = [c.strip() for c in header.split(",")]
    return any(c == "*" or c == etag or c.removeprefix("W/") == etag for c in candidates)
