"""Event resources as Google renders them: full, tombstone and generated-instance JSON, cached."""

from __future__ import annotations

import base64
from typing import Any

from calsync.emulators.common import json_text
from calsync.emulators.google.recurrence import _Occ
from calsync.emulators.google.state import _Calendar, _Event, _Store


class _Render(_Store):
    """Rendering shared by reads, writes and listings."""

    @staticmethod
    def _html_link(cal_id: str, event_id: str) -> str:
        eid = base64.urlsafe_b64encode(f"{event_id} {cal_id}".encode()).decode().rstrip("=")
        return f"https://www.google.com/calendar/event?eid={eid}"

    def _event_dict(self, cal: _Calendar, ev: _Event) -> dict[str, Any]:
        """The full Event resource, fields in Google's usual order, only fields the schema knows."""
        data = ev.data
        out: dict[str, Any] = {
            "kind": "calendar#event",
            "etag": ev.etag,
            "id": ev.id,
            "status": ev.status,
            "htmlLink": self._html_link(cal.id, ev.id),
            "created": ev.created,
            "updated": ev.updated,
        }
        for key in ("summary", "description", "location", "colorId"):
            if key in data:
                out[key] = data[key]
        out["creator"] = ev.creator
        out["organizer"] = ev.organizer
        for key in ("start", "end", "endTimeUnspecified"):
            if key in data:
                out[key] = data[key]
        if ev.recurring_event_id is None and data.get("recurrence"):
            out["recurrence"] = data["recurrence"]
        if ev.recurring_event_id is not None:
            out["recurringEventId"] = ev.recurring_event_id
            out["originalStartTime"] = ev.original_start
        for key in ("transparency", "visibility"):
            if key in data:
                out[key] = data[key]
        out["iCalUID"] = ev.ical_uid
        out["sequence"] = ev.sequence
        for key in (
            "attendees",
            "anyoneCanAddSelf",
            "guestsCanInviteOthers",
            "guestsCanModify",
            "guestsCanSeeOtherGuests",
            "privateCopy",
        ):
            if key in data:
                out[key] = data[key]
        conference = data.get("conferenceData")
        if conference:
            link = self._meet_link(conference)
            if link:
                out["hangoutLink"] = link
            out["conferenceData"] = conference
        out["reminders"] = data.get("reminders", {"useDefault": True})
        for key in ("extendedProperties", "source"):
            if key in data:
                out[key] = data[key]
        out["eventType"] = data.get("eventType", "default")
        return out

    @staticmethod
    def _meet_link(conference: dict[str, Any]) -> str | None:
        if ((conference.get("conferenceSolution") or {}).get("key") or {}).get("type") != "hangoutsMeet":
            return None
        for entry in conference.get("entryPoints") or []:
            if entry.get("entryPointType") == "video":
                return entry.get("uri")
        return None

    @staticmethod
    def _minimal_dict(ev: _Event) -> dict[str, Any]:
        """A tombstone as incremental results show it: only id (+ series keys for instances)."""
        out: dict[str, Any] = {"kind": "calendar#event", "etag": ev.etag, "id": ev.id, "status": "cancelled"}
        if ev.recurring_event_id is not None:
            out["recurringEventId"] = ev.recurring_event_id
            out["originalStartTime"] = ev.original_start
        return out

    def _fragment(self, cal: _Calendar, ev: _Event, full: bool) -> str:
        """Cached JSON text of an event, so listing 2500 unchanged events costs almost nothing."""
        variant = "full" if full or not ev.cancelled else "min"
        text = ev.cache.get(variant)
        if text is None:
            obj = self._event_dict(cal, ev) if variant == "full" else self._minimal_dict(ev)
            text = json_text(obj)
            ev.cache[variant] = text
        return text

    def _instance_dict(self, cal: _Calendar, series: _Event, occ: _Occ, full: bool) -> dict[str, Any]:
        """A generated instance of a series (no stored exception for it)."""
        iid = f"{series.id}_{occ.suffix}"
        if series.cancelled and not full:
            return {
                "kind": "calendar#event",
                "etag": series.etag,
                "id": iid,
                "status": "cancelled",
                "recurringEventId": series.id,
                "originalStartTime": occ.start_json,
            }
        out = self._event_dict(cal, series)
        out.pop("recurrence", None)
        out["id"] = iid
        out["htmlLink"] = self._html_link(cal.id, iid)
        out["start"] = occ.start_json
        out["end"] = occ.end_json
        rebuilt: dict[str, Any] = {}
        for key, value in out.items():
            rebuilt[key] = value
            if key == "end":
                rebuilt["recurringEventId"] = series.id
                rebuilt["originalStartTime"] = occ.start_json
        return rebuilt
