"""VEVENT -> EventData, with icalendar: a calendar object resource parsed, its VEVENTs as RemoteEvents,
and the modelled content of one VEVENT (times, recurrence lines, attendees, conference...). The fast
reader (fast.py) gives the same result for common shapes, with the helpers here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar import Calendar, Event
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

from calsync.model import (
    Attendee,
    EventData,
    RemoteEvent,
    canonical_instant,
    parse_instant,
)
from calsync.providers.canonical import (
    canonical_recurrence,
    canonical_text,
    canonical_zone,
)
from calsync.providers.ical.keys import _data_etag, recurrence_key

RECURRENCE_PROPERTIES = ("RRULE", "EXRULE", "RDATE", "EXDATE")
STRUCTURE = ("BEGIN", "END")
# Hosts whose links in a bare URL property are read as a video conference (when no CONFERENCE is given).
VIDEO_HOSTS = (
    "zoom.us",
    "meet.google.com",
    "teams.microsoft.com",
    "teams.live.com",
    "meet.jit.si",
    "whereby.com",
    "webex.com",
    "gotomeeting.com",
    "bigbluebutton",
)
# X- parameters on our CONFERENCE property: the neutral conference fields iCalendar has no place for.
X_TYPE, X_ID, X_PROVIDER = "X-CALSYNC-TYPE", "X-CALSYNC-CONFERENCE-ID", "X-CALSYNC-PROVIDER"

PARTSTAT_TO_RESPONSE = {
    "NEEDS-ACTION": "needsAction",
    "ACCEPTED": "accepted",
    "DECLINED": "declined",
    "TENTATIVE": "tentative",
}
OPTIONAL_ROLES = ("OPT-PARTICIPANT", "NON-PARTICIPANT")


class InvalidCalendarData(ValueError):
    """The text is not iCalendar calsync can read."""


# --- parsing ------------------------------------------------------------------------------


def parse_calendar(text: str | bytes) -> Calendar:
    try:
        cal = Calendar.from_ical(text)
    except (ValueError, IndexError, KeyError) as exc:
        raise InvalidCalendarData(f"unreadable iCalendar data: {exc}") from exc
    if not isinstance(cal, Calendar):
        raise InvalidCalendarData("not a VCALENDAR")
    return cal


def vevents(cal: Calendar) -> list[Event]:
    return [c for c in cal.subcomponents if isinstance(c, Event)]


def find_vevent(cal: Calendar, key: str | None) -> Event | None:
    """The master (key None) or the override with that recurrence key."""
    for comp in vevents(cal):
        if recurrence_key(comp) == key:
            return comp
    return None


def component_etag(vevent: Event) -> str:
    """A digest of what one VEVENT says as calsync models it (blind to property order, folding,
    DTSTAMP, alarms and X- properties): the same value whichever parser read it, and stable across
    calsync's own rewrites of the resource (which re-serialise every VEVENT in it)."""
    return _data_etag(event_data(vevent))


def _remote_events_icalendar(base_id: str, etag: str, text: str) -> list[RemoteEvent]:
    cal = parse_calendar(text)
    comps = [c for c in vevents(cal) if "DTSTART" in c]  # (DTSTART may only be missing in iTIP messages)
    if not comps:
        return []  # a VTODO or VJOURNAL resource: not an event
    comps.sort(key=lambda c: "RECURRENCE-ID" in c)
    multi = len(vevents(cal)) > 1  # several VEVENTs: component ETags, and writes re-read the resource
    out: list[RemoteEvent] = []
    seen: set[str | None] = set()
    for comp in comps:
        key = recurrence_key(comp)
        if key in seen:
            continue  # a second master or a repeated override: invalid; the first one counts
        seen.add(key)
        ics = calendar_for(cal, comp) if multi else text
        out.append(_remote_event(base_id, key, None if multi else etag, event_data(comp, ics), _updated(comp)))
    return out


def _remote_event(base_id: str, key: str | None, etag: str | None, data: EventData, updated: str | None) -> RemoteEvent:
    """One VEVENT of a resource; `etag` None: one of several, so it gets its own component ETag."""
    digest = data.content_hash()  # once: the component ETag is made from it, and the engine needs it
    event = RemoteEvent(
        remote_id=base_id if key is None else f"{base_id}#{key}",
        etag=etag if etag is not None else _data_etag(data, digest),
        data=data,
        series_remote_id=None if key is None else base_id,
        updated=updated,
    )
    event.__dict__["content_hash"] = digest  # (RemoteEvent.content_hash is a cached_property)
    return event


def calendar_for(cal: Calendar, comp: Event) -> str:
    """A VCALENDAR with the calendar's own properties, the time zones `comp` uses, and `comp` only."""
    out = Calendar()
    for name, value in cal.property_items(recursive=False, sorted=False):
        if name not in STRUCTURE:
            out.add(name, value, encode=False)
    used = _tzids(comp)
    for tz in cal.subcomponents:
        if tz.name == "VTIMEZONE" and str(tz.get("TZID")) in used:
            out.add_component(tz)
    out.add_component(comp)
    return _ical_text(out)


def _tzids(comp: Event) -> set[str]:
    found: set[str] = set()
    for _, value in comp.property_items(recursive=True, sorted=False):
        params = getattr(value, "params", None)
        if params and "TZID" in params:
            found.add(str(params["TZID"]))
    return found


def _updated(comp: Mapping[str, Any]) -> str | None:
    for name in ("LAST-MODIFIED", "DTSTAMP"):
        prop = comp.get(name)
        if prop is not None and isinstance(prop.dt, datetime):
            value = prop.dt if prop.dt.tzinfo else prop.dt.replace(tzinfo=UTC)
            return canonical_instant(value)
    return None


# --- VEVENT -> EventData ----------------------------------------------------------------------


def event_data(comp: Event, ics: str | None = None) -> EventData:
    """The modelled content of one VEVENT; `ics` is kept in extra for writing it back later."""
    return event_data_of(comp, ics, recurrence_lines(comp))


def event_data_of(comp: Any, ics: str | None, recurrence: list[str] | None) -> EventData:
    """event_data for anything that looks like a VEVENT to the helpers here (icalendar's, or the
    fast reader's light one), with its recurrence lines already worked out."""
    dtstart = comp.get("DTSTART")
    start, all_day, zone = _boundary(dtstart)
    end = _end(comp, start, all_day)
    original = comp.get("RECURRENCE-ID")
    return EventData(
        title=_text(comp, "SUMMARY") or "",
        start=start,
        end=end,
        all_day=all_day,
        time_zone=canonical_zone(zone),  # TZID=UTC (or Etc/UTC...) is a UTC time, as calsync writes one
        description=canonical_text(_text(comp, "DESCRIPTION")),
        location=canonical_text(_text(comp, "LOCATION")),
        status=_status(comp),
        # servers re-spell rules (part order, defaults spelled out): one spelling, as every reader gives
        recurrence=canonical_recurrence(recurrence, _rule_start(dtstart)) if recurrence else recurrence,
        original_start=_boundary(original)[0] if original is not None else None,
        attendees=_attendees(comp),
        conference=conference_summary(comp),
        ical_uid=str(comp["UID"]) if "UID" in comp else None,
        sequence=_int(comp.get("SEQUENCE")),
        extra={"caldav": {"ics": ics}} if ics else {},
    )


def _rule_start(prop: Any) -> date | datetime | None:
    """DTSTART as the rule sees it: a date, or its wall time in its own zone (floating: as written)."""
    value = getattr(prop, "dt", None)
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    return value if isinstance(value, date) else None


def _text(comp: Event, name: str) -> str | None:
    value = comp.get(name)
    if isinstance(value, list):
        value = value[0] if value else None
    return None if value is None else str(value)


def _int(value: Any) -> int:
    try:
        return int(value) if value is not None else 0
    except (TypeError, ValueError):
        return 0


def _status(comp: Event) -> str:
    value = (_text(comp, "STATUS") or "CONFIRMED").strip().lower()
    return value if value in ("confirmed", "tentative", "cancelled") else "confirmed"


def zone_name(prop: Any, value: datetime) -> str | None:
    """The IANA zone of a DATE-TIME property, or None for UTC / unknown zones. Exchange and Outlook
    name zones the Windows way ("W. Europe Standard Time"): CLDR's table (icalendar's copy) gives
    the IANA zone, which a recurring series needs to keep its hour across daylight-saving changes."""
    params = getattr(prop, "params", {}) or {}
    if "TZID" not in params:
        return None
    tzid = str(params["TZID"])
    for candidate in (getattr(value.tzinfo, "key", None), tzid, WINDOWS_TO_OLSON.get(tzid.strip())):
        if candidate and _zoneinfo(candidate) is not None:
            return candidate
    return None


def _zoneinfo(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _boundary(prop: Any) -> tuple[str, bool, str | None]:
    """(canonical time, all-day?, IANA zone) of a DTSTART / DTEND / RECURRENCE-ID property."""
    if prop is None:
        return "", False, None
    value = prop.dt
    if isinstance(value, datetime):
        zone = zone_name(prop, value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)  # floating time: read as UTC
        return canonical_instant(value), False, zone
    return value.isoformat(), True, None


def _end(comp: Event, start: str, all_day: bool) -> str:
    if "DTEND" in comp:
        end, _, _ = _boundary(comp["DTEND"])
        if all_day and len(end) > 10:
            end = end[:10]
        return end or start
    if not start:
        return ""
    first = date.fromisoformat(start) if all_day else parse_instant(start)
    if "DURATION" in comp:
        duration: Any = comp["DURATION"]
        value = first + duration.dt
    else:  # RFC 5545 3.6.1: a day for a DATE start, nothing for a DATE-TIME start
        value = first + timedelta(days=1) if all_day else first
    if all_day:
        return (value if not isinstance(value, datetime) else value.date()).isoformat()
    return canonical_instant(value)


def recurrence_lines(comp: Event) -> list[str] | None:
    """RRULE / EXRULE / RDATE / EXDATE as iCalendar content lines (the form Google uses too)."""
    lines: list[tuple[int, str]] = []
    for name, value in comp.property_items(recursive=False, sorted=False):
        if name in RECURRENCE_PROPERTIES:
            lines.append((RECURRENCE_PROPERTIES.index(name), str(comp.content_line(name, value))))
    lines.sort(key=lambda pair: pair[0])  # servers reorder properties: RRULE, EXRULE, RDATE, EXDATE
    return [line for _, line in lines] or None


def _email(address: Any) -> str:
    text = str(address).strip()
    return text[7:] if text.lower().startswith("mailto:") else text


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _attendees(comp: Event) -> list[Attendee]:
    organizer = comp.get("ORGANIZER")
    organizer_email = _email(organizer).lower() if organizer is not None else None
    out: list[Attendee] = []
    for prop in _as_list(comp.get("ATTENDEE")):
        params = prop.params
        email = _email(prop)
        out.append(
            Attendee(
                email=email,
                name=str(params["CN"]) if params.get("CN") else None,
                response=PARTSTAT_TO_RESPONSE.get(str(params.get("PARTSTAT", "NEEDS-ACTION")).upper(), "needsAction"),
                optional=str(params.get("ROLE", "")).upper() in OPTIONAL_ROLES,
                organizer=organizer_email is not None and email.lower() == organizer_email,
            )
        )
    return out


def _conference_prop(comp: Event) -> Any | None:
    """The CONFERENCE property calsync reads: ours (stamped), else the first video one, else the first."""
    props = _as_list(comp.get("CONFERENCE"))
    tests: tuple[Callable[[Any], bool], ...] = (
        lambda p: X_PROVIDER in p.params,
        lambda p: "VIDEO" in [str(f).upper() for f in _as_list(p.params.get("FEATURE"))],
        lambda p: True,
    )
    for test in tests:
        for prop in props:
            if test(prop):
                return prop
    return None


def _is_video_link(url: str) -> bool:
    host = (urlparse(url).hostname or "").lower()
    return any(host == h or host.endswith("." + h) or h in host for h in VIDEO_HOSTS)


def conference_summary(comp: Event) -> dict[str, Any] | None:
    """The neutral conference of a VEVENT: RFC 7986 CONFERENCE, else a video link in URL."""
    prop = _conference_prop(comp)
    if prop is not None:
        params = prop.params
        return {
            "type": str(params[X_TYPE]) if params.get(X_TYPE) else None,
            "name": str(params["LABEL"]) if params.get("LABEL") else None,
            "conference_id": str(params[X_ID]) if params.get(X_ID) else None,
            "join_url": str(prop),
            "provider": str(params[X_PROVIDER]) if params.get(X_PROVIDER) else None,
        }
    url = _text(comp, "URL")
    if url and _is_video_link(url):
        return {"type": None, "name": None, "conference_id": None, "join_url": url, "provider": None}
    return None


def _ical_text(cal: Calendar) -> str:
    text: bytes = cal.to_ical()  # (icalendar does not annotate what to_ical returns)
    return text.decode()
