"""calendarList and calendars: a user's calendars (primary first) and their metadata."""

from __future__ import annotations

import hashlib
from typing import Any

from calsync.emulators.google.errors import ApiError, _invalid, _required
from calsync.emulators.google.params import Params
from calsync.emulators.google.state import _Calendar, _random_id, _Store
from calsync.emulators.google.times import _zone


class _Calendars(_Store):
    """calendarList.list/get and calendars.insert/get/patch/update/delete."""

    def calendar_list(self, user: str, params: Params) -> dict[str, Any]:
        """users/me/calendarList: the user's calendars, primary first, offset-paged."""
        with self._lock:
            self.ensure_user(user)
            ids = self._owned.get(user, [])
            wanted = params.int("maxResults")
            limit = 100 if wanted is None else min(wanted, 250)
            if limit < 1:
                raise _invalid("Invalid value for: maxResults", "maxResults")
            offset = 0
            token = params.get("pageToken")
            if token is not None:
                payload = self._signer.open(token)
                if not isinstance(payload, dict) or payload.get("cl") != user:
                    raise _invalid("Invalid page token value.", "pageToken")
                offset = int(payload.get("o", 0))
            page = ids[offset : offset + limit]
            out: dict[str, Any] = {
                "kind": "calendar#calendarList",
                "etag": self._list_etag(ids),
                "items": [self._list_entry(self._calendars[c]) for c in page],
            }
            if offset + limit < len(ids):
                out["nextPageToken"] = self._signer.seal({"cl": user, "o": offset + limit})
            return out

    def _list_etag(self, ids: list[str]) -> str:
        joined = "|".join(self._calendars[c].etag for c in ids)
        digest = hashlib.sha1(joined.encode(), usedforsecurity=False).hexdigest()
        return f'"{int(digest[:12], 16)}"'

    def calendar_list_get(self, user: str, ref: str) -> dict[str, Any]:
        with self._lock:
            return self._list_entry(self._calendar(user, ref))

    def insert_calendar(self, user: str, body: dict[str, Any]) -> dict[str, Any]:
        """calendars.insert: a secondary calendar with a server-generated group id."""
        with self._lock:
            fields = self._calendar_fields(body, None)
            cal_id = f"{_random_id()}@group.calendar.google.com"
            cal = self._new_calendar(
                cal_id,
                user,
                False,
                fields["summary"],
                fields.get("timeZone", "UTC"),
                fields.get("description"),
                fields.get("location"),
            )
            return self._calendar_dict(cal)

    def get_calendar(self, user: str, ref: str) -> dict[str, Any]:
        with self._lock:
            return self._calendar_dict(self._calendar(user, ref))

    def write_calendar(self, user: str, ref: str, body: dict[str, Any], patch: bool) -> dict[str, Any]:
        """calendars.patch / calendars.update."""
        with self._lock:
            cal = self._calendar(user, ref)
            fields = self._calendar_fields(body, cal if patch else None)
            cal.summary = fields["summary"]
            cal.time_zone = fields.get("timeZone", cal.time_zone)
            cal.description = fields.get("description")
            cal.location = fields.get("location")
            cal.etag = self._next_etag()
            return self._calendar_dict(cal)

    def delete_calendar(self, user: str, ref: str) -> None:
        with self._lock:
            cal = self._calendar(user, ref)
            if cal.primary:
                raise ApiError(400, "cannotDeletePrimaryCalendar", "Cannot delete primary calendar; use clear instead.")
            del self._calendars[cal.id]
            self._owned[user].remove(cal.id)
            self.push.notify(cal.id, "not_exists")

    @staticmethod
    def _calendar_fields(body: dict[str, Any], base: _Calendar | None) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if base is not None:
            fields = {"summary": base.summary, "timeZone": base.time_zone}
            if base.description is not None:
                fields["description"] = base.description
            if base.location is not None:
                fields["location"] = base.location
        for key in ("summary", "description", "location", "timeZone"):
            if key not in body:
                continue
            value = body[key]
            if value is None:
                fields.pop(key, None)
            elif not isinstance(value, str):
                raise _invalid(f"Invalid value for {key}.")
            else:
                fields[key] = value
        if not fields.get("summary"):
            raise _required("Missing title.")
        if "timeZone" in fields:
            _zone(fields["timeZone"], "calendar")
        return fields

    @staticmethod
    def _calendar_dict(cal: _Calendar) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "calendar#calendar", "etag": cal.etag, "id": cal.id, "summary": cal.summary}
        if cal.description is not None:
            out["description"] = cal.description
        if cal.location is not None:
            out["location"] = cal.location
        out["timeZone"] = cal.time_zone
        out["conferenceProperties"] = {"allowedConferenceSolutionTypes": ["hangoutsMeet"]}
        return out

    @staticmethod
    def _list_entry(cal: _Calendar) -> dict[str, Any]:
        out = _Calendars._calendar_dict(cal)
        out["kind"] = "calendar#calendarListEntry"
        out.update(
            {
                "colorId": "14",
                "backgroundColor": "#9fe1e7",
                "foregroundColor": "#000000",
                "selected": True,
                "accessRole": "owner",
                "defaultReminders": [],
            }
        )
        if cal.primary:
            out["primary"] = True
        return out
