"""Event resources as Graph renders them for one request's view: zone, id form, body type, links."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from calsync.emulators.graph.fields import (
    _body_view,
    _ical_uid,
    _location_json,
    _preview,
)
from calsync.emulators.graph.ids import _encode_event_id
from calsync.emulators.graph.state import _Event, _Store, _View
from calsync.emulators.graph.times import _fmt_instant, _fmt_local, _fmt_ts


class _Render(_Store):
    """Rendering shared by reads, writes, lists and delta."""

    def _event_id(self, view: _View, ev: _Event, occ: int | None = None, cal: bytes | None = None) -> str:
        """The id in the form the request asked for; ids of an earlier calendar keep that calendar's form."""
        gen = ev.gen if cal is None or cal == ev.calendar else ev.left_gen.get(cal, ev.gen)
        return _encode_event_id(view.user.header, ev.key, gen, view.immutable, occ)

    def _times(self, view: _View, ev: _Event, start: datetime, end: datetime) -> tuple[dict[str, str], dict[str, str]]:
        """start/end in the requested zone; all-day events keep their midnights (they float)."""
        if ev.all_day:
            local_start = start.astimezone(ev.start.zone).replace(tzinfo=None)
            local_end = end.astimezone(ev.start.zone).replace(tzinfo=None)
        else:
            local_start = start.astimezone(view.zone).replace(tzinfo=None)
            local_end = end.astimezone(view.zone).replace(tzinfo=None)
        return (
            {"dateTime": _fmt_local(local_start), "timeZone": view.tz_label},
            {"dateTime": _fmt_local(local_end), "timeZone": view.tz_label},
        )

    def _event_json(self, view: _View, ev: _Event, occ: datetime | None = None) -> dict[str, Any]:
        """The full event resource. ``occ`` renders an occurrence of the series ``ev``."""
        user = view.user
        source = ev
        if occ is not None:
            start, end = occ, occ + (ev.series.duration if ev.series else timedelta())
        else:
            start, end = ev.start.instant, ev.end.instant
        master = ev.master
        kind = (
            "exception"
            if master is not None
            else "occurrence"
            if occ is not None
            else "seriesMaster"
            if ev.is_series
            else "singleInstance"
        )
        original = ev.original if master is not None else occ
        occ_key = int(original.timestamp()) if original is not None else None
        root = master if master is not None else ev
        event_id = self._event_id(view, root, occ_key)
        start_json, end_json = self._times(view, source, start, end)
        data = source.data
        online = source.online if data.get("isOnlineMeeting") else None
        out: dict[str, Any] = {
            "@odata.etag": f'W/"{source.change_key}"',
            "id": event_id,
            "createdDateTime": _fmt_ts(source.created),
            "lastModifiedDateTime": _fmt_ts(source.modified),
            "changeKey": source.change_key,
            "categories": list(data.get("categories") or []),
        }
        if root.transaction_id is not None and kind in ("singleInstance", "seriesMaster"):
            out["transactionId"] = root.transaction_id
        out.update(
            {
                "originalStartTimeZone": source.start.tz_name,
                "originalEndTimeZone": source.end.tz_name,
                "iCalUId": _ical_uid(root.key, original),
                "reminderMinutesBeforeStart": data.get("reminderMinutesBeforeStart", 15),
                "isReminderOn": data.get("isReminderOn", True),
                "hasAttachments": False,
                "subject": data.get("subject", ""),
                "bodyPreview": _preview(data.get("body")),
                "importance": data.get("importance", "normal"),
                "sensitivity": data.get("sensitivity", "normal"),
                "isAllDay": bool(data.get("isAllDay")),
                "isCancelled": source.is_cancelled,
                "isOrganizer": True,
                "responseRequested": data.get("responseRequested", True),
                "seriesMasterId": self._event_id(view, root) if kind in ("exception", "occurrence") else None,
                "showAs": data.get("showAs", "busy"),
                "type": kind,
                "webLink": f"https://outlook.office365.com/owa/?itemid={event_id.replace('=', '%3D')}&exvsurl=1"
                "&path=/calendar/item",
                "onlineMeetingUrl": None,
                "isOnlineMeeting": bool(data.get("isOnlineMeeting")),
                "onlineMeetingProvider": data.get("onlineMeetingProvider", "teamsForBusiness")
                if data.get("isOnlineMeeting")
                else "unknown",
                "allowNewTimeProposals": data.get("allowNewTimeProposals", True),
                "isDraft": False,
                "hideAttendees": data.get("hideAttendees", False),
                "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
                "body": _body_view(data.get("body"), view.text_body),
                "start": start_json,
                "end": end_json,
                "location": _location_json(data.get("location")),
                "locations": [_location_json(v) for v in data.get("locations") or []],
                "recurrence": data.get("recurrence") if kind == "seriesMaster" else None,
                "attendees": [dict(a) for a in data.get("attendees") or []],
                "organizer": {"emailAddress": {"name": user.display_name, "address": user.email}},
                "onlineMeeting": dict(online) if online else None,
            }
        )
        if original is not None:
            out["originalStart"] = _fmt_instant(original)
        if view.expand_props is not None:
            props = data.get("singleValueExtendedProperties") or []
            out["singleValueExtendedProperties"] = [
                dict(p) for p in props if not view.expand_props or p["id"].lower() == view.expand_props.lower()
            ]
        return out

    def _removed_json(self, view: _View, ev: _Event, occ: int | None, cal: bytes) -> dict[str, Any]:
        return {
            "@odata.type": "#microsoft.graph.event",
            "id": self._event_id(view, ev, occ, cal),
            "@removed": {"reason": "deleted"},
        }


def _producer(emu: _Render, view: _View, ev: _Event, occ: datetime | None) -> Callable[[], dict[str, Any]]:
    def produce() -> dict[str, Any]:
        return {"@odata.type": "#microsoft.graph.event", **emu._event_json(view, ev, occ)}

    return produce


def _removed_producer(
    emu: _Render, view: _View, ev: _Event, occ: int | None, cal: bytes
) -> Callable[[], dict[str, Any]]:
    return lambda: emu._removed_json(view, ev, occ, cal)
