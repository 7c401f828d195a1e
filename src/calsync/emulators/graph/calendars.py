"""A mailbox's calendars: list, get, create, rename/recolour and delete (the default one cannot be)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from calsync.emulators.graph.errors import GraphError, _bad
from calsync.emulators.graph.ids import _encode_calendar_id
from calsync.emulators.graph.state import API_PREFIX, _Calendar, _Store, _User


class _Calendars(_Store):
    """/me/calendars and /me/calendar."""

    def _calendar_json(self, user: _User, cal: _Calendar) -> dict[str, Any]:
        return {
            "@odata.etag": f'W/"{cal.change_key}"',
            "id": _encode_calendar_id(user.header, cal.key),
            "name": cal.name,
            "color": cal.color,
            "hexColor": "",
            "isDefaultCalendar": cal.is_default,
            "changeKey": cal.change_key,
            "canShare": True,
            "canViewPrivateItems": True,
            "canEdit": True,
            "allowedOnlineMeetingProviders": ["teamsForBusiness"],
            "defaultOnlineMeetingProvider": "teamsForBusiness",
            "isTallyingResponses": True,
            "isRemovable": not cal.is_default,
            "owner": {"name": user.display_name, "address": user.email},
        }

    def list_calendars(self, email: str, base: str) -> dict[str, Any]:
        with self._lock:
            user = self._user(email)
            cals = [c for c in user.calendars.values() if not c.deleted]
            return {
                "@odata.context": f"{base}{API_PREFIX}/$metadata#users('{quote(email)}')/calendars",
                "value": [self._calendar_json(user, c) for c in cals],
            }

    def get_calendar(self, email: str, ref: str | None) -> dict[str, Any]:
        with self._lock:
            user = self._user(email)
            return self._calendar_json(user, self._calendar(user, ref))

    def create_calendar(self, email: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _bad("The calendar name is required.", "ErrorInvalidRequest")
        with self._lock:
            user = self._user(email)
            if any(c.name.lower() == name.strip().lower() for c in user.calendars.values() if not c.deleted):
                raise GraphError(409, "ErrorFolderExists", "A folder with the specified name already exists.")
            key = self._new_key()
            cal = _Calendar(key, email, name.strip(), False, self._change_key(user))
            if isinstance(body.get("color"), str):
                cal.color = body["color"]
            user.calendars[key] = cal
            return self._calendar_json(user, cal)

    def update_calendar(self, email: str, ref: str | None, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            user = self._user(email)
            cal = self._calendar(user, ref)
            name = body.get("name")
            if name is not None:
                if not isinstance(name, str) or not name.strip():
                    raise _bad("The calendar name must be a non-empty string.")
                cal.name = name.strip()
            if isinstance(body.get("color"), str):
                cal.color = body["color"]
            cal.change_key = self._change_key(user)
            return self._calendar_json(user, cal)

    def delete_calendar(self, email: str, ref: str) -> None:
        with self._changes():
            user = self._user(email)
            cal = self._calendar(user, ref)
            if cal.is_default:
                raise GraphError(400, "ErrorDeleteDistinguishedFolder", "Distinguished folders cannot be deleted.")
            cal.deleted = True
            for ev in list(cal.order):
                if ev.calendar == cal.key and not ev.deleted:
                    self._delete_event(user, ev)
