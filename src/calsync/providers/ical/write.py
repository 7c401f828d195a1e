"""EventData -> VEVENT: patching one VEVENT, a new resource, RECURRENCE-ID and EXDATE helpers. No I/O here.

Writing never rebuilds a resource from scratch when there is one: the original text (kept in
`EventData.extra["caldav"]["ics"]`, or fetched again) is parsed, and only the properties calsync
models are changed in the one VEVENT being written, and only those whose modelled value differs.
Alarms, categories, X- properties, attachments, ORGANIZER, other VEVENTs of the series... stay as
they were (property order and line folding may change; meaning does not).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, vCalAddress, vText

from calsync.model import Attendee, EventData, parse_instant
from calsync.providers.ical.keys import _key_of, recurrence_key
from calsync.providers.ical.read import (
    OPTIONAL_ROLES,
    PARTSTAT_TO_RESPONSE,
    RECURRENCE_PROPERTIES,
    X_ID,
    X_PROVIDER,
    X_TYPE,
    InvalidCalendarData,
    _as_list,
    _conference_prop,
    _email,
    _ical_text,
    _text,
    _zoneinfo,
    event_data,
    find_vevent,
    parse_calendar,
    vevents,
    zone_name,
)

PRODID = "-//calsync//calsync//EN"
RESPONSE_TO_PARTSTAT = {v: k for k, v in PARTSTAT_TO_RESPONSE.items()}


def new_calendar() -> Calendar:
    cal = Calendar()
    cal.add("VERSION", "2.0")
    cal.add("PRODID", PRODID)
    return cal


def new_vevent(uid: str) -> Event:
    comp = Event()
    comp.add("UID", uid)
    comp.add("DTSTAMP", datetime.now(UTC).replace(microsecond=0))
    return comp


def render(cal: Calendar) -> str:
    """The text to PUT, with a VTIMEZONE for every TZID used (generated from the IANA database,
    covering the years from the earliest start on, to keep it short)."""
    starts: list[Any] = [c["DTSTART"] for c in vevents(cal) if "DTSTART" in c]
    years = [prop.dt.year for prop in starts]
    first = date(max(1970, min(years) - 1), 1, 1) if years else date(1970, 1, 1)
    cal.add_missing_timezones(first_date=first, last_date=max(date(2038, 1, 1), date(first.year + 10, 1, 1)))
    return _ical_text(cal)


def apply_event_data(comp: Event, data: EventData, *, creating: bool = False, now: datetime | None = None) -> bool:
    """Change the modelled properties of `comp` whose value differs from `data`. True if any did.

    Unmodelled properties, parameters of untouched properties, and subcomponents are left alone.
    A significant change (times, recurrence, status) of an existing event bumps SEQUENCE, as an
    organizer's client would; `creating` leaves it as it is.
    """
    old = event_data(comp)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    changed = significant = False
    if old.title != data.title:
        _set_text(comp, "SUMMARY", data.title or None)
        changed = True
    for name, attr in (("DESCRIPTION", "description"), ("LOCATION", "location")):
        if getattr(old, attr) != getattr(data, attr):
            _set_text(comp, name, getattr(data, attr))
            changed = True
    if (
        (old.start, old.end, old.all_day, old.time_zone) != (data.start, data.end, data.all_day, data.time_zone)
        and data.start
        and data.end
    ):
        _set_times(comp, data)
        changed = significant = True
    if old.status != data.status:
        comp.pop("STATUS", None)
        if data.status != "confirmed" or old.status != "confirmed":
            comp.add("STATUS", data.status.upper())
        changed = significant = True
    if not _same_recurrence(old.recurrence, data.recurrence):
        _set_recurrence(comp, data.recurrence or [])
        changed = significant = True
    if [a.__dict__ for a in old.attendees] != [a.__dict__ for a in data.attendees]:
        _set_attendees(comp, data.attendees)
        changed = True
    if old.conference != data.conference:
        _set_conference(comp, old.conference, data.conference)
        changed = True
    if changed:
        _set_stamp(comp, "DTSTAMP", now)
        if "LAST-MODIFIED" in comp:
            _set_stamp(comp, "LAST-MODIFIED", now)
        if significant and not creating and "SEQUENCE" in comp:
            comp.pop("SEQUENCE")
            comp.add("SEQUENCE", max(old.sequence, data.sequence) + 1)
    return changed


def new_resource(data: EventData, uid: str) -> tuple[Calendar, Event]:
    """A new calendar object for `data`: its preserved original if it has one (mirrored from another
    CalDAV calendar), else a fresh VCALENDAR. Returns (calendar, the VEVENT to patch)."""
    original = ((data.extra or {}).get("caldav") or {}).get("ics")
    if original:
        try:
            cal = parse_calendar(original)
        except InvalidCalendarData:
            cal = None
        if cal is not None:
            comp = find_vevent(cal, None) or (vevents(cal)[0] if vevents(cal) else None)
            if comp is not None:
                for other in [c for c in vevents(cal) if c is not comp]:
                    cal.subcomponents.remove(other)
                return cal, comp
    cal = new_calendar()
    comp = new_vevent(data.ical_uid or uid)
    if data.sequence:
        comp.add("SEQUENCE", data.sequence)
    cal.add_component(comp)
    return cal, comp


def set_recurrence_id(comp: Event, original_start: str, like: Event | None) -> None:
    """RECURRENCE-ID for a new override, in the master's zone when it has one."""
    comp.pop("RECURRENCE-ID", None)
    if len(original_start) == 10:
        comp.add("RECURRENCE-ID", date.fromisoformat(original_start))
        return
    value = parse_instant(original_start)
    master_start = like.get("DTSTART") if like is not None else None
    if master_start is not None and isinstance(master_start.dt, datetime):
        zone = zone_name(master_start, master_start.dt)
        if zone:
            value = value.astimezone(ZoneInfo(zone))
        elif master_start.dt.tzinfo is None:  # floating series: floating recurrence ids
            comp.add("RECURRENCE-ID", value.astimezone(UTC).replace(tzinfo=None))
            return
    comp.add("RECURRENCE-ID", value)


def add_exdate(master: Event, override_key: str, override: Event | None) -> None:
    """Exclude one instance from the master's rule (a deleted occurrence)."""
    prop = override.get("RECURRENCE-ID") if override is not None else None
    if prop is not None:
        value = prop.dt
    elif len(override_key) == 8:
        value = datetime.strptime(override_key, "%Y%m%d").date()  # noqa: DTZ007 (a date)
    elif override_key.endswith("Z"):
        value = datetime.strptime(override_key, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    else:
        value = datetime.strptime(override_key, "%Y%m%dT%H%M%S")  # noqa: DTZ007 (the key carries no zone)
    master.add("EXDATE", value)


def include_instance(master: Event, key: str) -> bool:
    """The master's EXDATEs no longer exclude the instance at recurrence key `key` (a live override is
    written there: an excluded instance with an override would be ambiguous, and read as deleted).
    The other EXDATE values are kept as they were; False when none excluded it."""
    props = _as_list(master.get("EXDATE"))
    values = [value.dt for prop in props for value in prop.dts]
    kept = [value for value in values if _key_of(value) != key]
    if len(kept) == len(values):
        return False
    del master["EXDATE"]
    for value in kept:
        master.add("EXDATE", value)
    return True


def _excluded_keys(master: Event) -> set[str]:
    """The recurrence keys (as recurrence_key spells them) the master's EXDATEs exclude."""
    return {_key_of(value.dt) for prop in _as_list(master.get("EXDATE")) for value in prop.dts}


def exclude_instance(cal: Calendar, original_start: str) -> bool:
    """A deleted occurrence, the iCalendar way: an EXDATE on the master (in its own zone, as the
    override's RECURRENCE-ID would be) and the instance's override, if any, removed. False when the
    resource already says so (nothing to write)."""
    master = find_vevent(cal, None)
    probe = new_vevent("probe")
    set_recurrence_id(probe, original_start, master)
    key = recurrence_key(probe)
    changed = False
    override = find_vevent(cal, key)
    if override is not None and override is not master:
        cal.subcomponents.remove(override)
        changed = True
    if master is not None and key not in _excluded_keys(master):
        recurrence_id: Any = probe["RECURRENCE-ID"]
        master.add("EXDATE", recurrence_id.dt)
        changed = True
    return changed


def drop_excluded_overrides(cal: Calendar, master: Event) -> None:
    """Remove the overrides of instances the master's EXDATEs exclude (a deleted occurrence keeps none)."""
    excluded = _excluded_keys(master)
    for comp in vevents(cal):
        if comp is not master and recurrence_key(comp) in excluded:
            cal.subcomponents.remove(comp)


def _set_text(comp: Event, name: str, value: str | None) -> None:
    """Set a text property; an empty text is no property (it reads back as None, as it was meant)."""
    old = comp.get(name)
    params: Any = old.params if old is not None and getattr(old, "params", None) else None
    comp.pop(name, None)
    if value:
        comp.add(name, vText(value), parameters=params)


def _set_stamp(comp: Event, name: str, now: datetime) -> None:
    comp.pop(name, None)
    comp.add(name, now)


def _set_times(comp: Event, data: EventData) -> None:
    for name in ("DTSTART", "DTEND", "DURATION"):
        comp.pop(name, None)
    if data.all_day:
        comp.add("DTSTART", date.fromisoformat(data.start[:10]))
        comp.add("DTEND", date.fromisoformat(data.end[:10]))
        return
    zone = _zoneinfo(data.time_zone)
    start, end = parse_instant(data.start), parse_instant(data.end)
    if zone is not None and data.time_zone != "UTC":
        start, end = start.astimezone(zone), end.astimezone(zone)
    else:
        start, end = start.astimezone(UTC), end.astimezone(UTC)
    comp.add("DTSTART", start)
    comp.add("DTEND", end)


def _set_recurrence(comp: Event, lines: list[str]) -> None:
    for name in RECURRENCE_PROPERTIES:
        comp.pop(name, None)
    if not lines:
        return
    text = "BEGIN:VEVENT\r\n" + "\r\n".join(line.strip() for line in lines) + "\r\nEND:VEVENT\r\n"
    try:
        parsed = Event.from_ical(text)
    except (ValueError, IndexError, KeyError) as exc:
        raise InvalidCalendarData(f"bad recurrence lines {lines!r}: {exc}") from exc
    for name, value in parsed.property_items(recursive=False, sorted=False):
        if name in RECURRENCE_PROPERTIES:
            comp.add(name, value, encode=False)


def _set_attendees(comp: Event, attendees: list[Attendee]) -> None:
    """Rewrite ATTENDEE lines; an attendee who stays keeps the parameters calsync does not model
    (RSVP, CUTYPE, X-...). ORGANIZER is left as it is."""
    before = {_email(p).lower(): p for p in _as_list(comp.get("ATTENDEE"))}
    comp.pop("ATTENDEE", None)
    for attendee in attendees:
        previous = before.get(attendee.email.lower())
        params: dict[str, Any] = dict(previous.params) if previous is not None else {}
        if attendee.name:
            params["CN"] = attendee.name
        else:
            params.pop("CN", None)
        if attendee.response != "needsAction" or "PARTSTAT" in params:
            params["PARTSTAT"] = RESPONSE_TO_PARTSTAT.get(attendee.response, "NEEDS-ACTION")
        was_optional = str(params.get("ROLE", "")).upper() in OPTIONAL_ROLES
        if attendee.optional != was_optional:
            params["ROLE"] = "OPT-PARTICIPANT" if attendee.optional else "REQ-PARTICIPANT"
        comp.add("ATTENDEE", vCalAddress(f"mailto:{attendee.email}"), parameters=params)


def _set_conference(comp: Event, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
    """Replace the CONFERENCE calsync read (others stay); keep URL pointing at the join link when it
    was ours to set. LOCATION and DESCRIPTION are never touched for a conference."""
    chosen = _conference_prop(comp)
    if chosen is not None:
        remaining = [p for p in _as_list(comp.get("CONFERENCE")) if p is not chosen]
        comp.pop("CONFERENCE", None)
        for prop in remaining:
            comp.add("CONFERENCE", prop, encode=False)
    old_url = (old or {}).get("join_url")
    url = _text(comp, "URL")
    if url is not None and url == old_url:
        comp.pop("URL", None)
        url = None
    if not new or not new.get("join_url"):
        return
    params: dict[str, Any] = {"VALUE": "URI", "FEATURE": "VIDEO"}
    for key, field in (("LABEL", "name"), (X_TYPE, "type"), (X_ID, "conference_id"), (X_PROVIDER, "provider")):
        if new.get(field):
            params[key] = str(new[field])
    comp.add("CONFERENCE", new["join_url"], parameters=params)
    if url is None:
        comp.add("URL", new["join_url"])


def _same_recurrence(a: list[str] | None, b: list[str] | None) -> bool:
    return sorted(a or []) == sorted(b or [])
