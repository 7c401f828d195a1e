"""The fast reader: a calendar object resource's VEVENTs as RemoteEvents without icalendar's object model.

icalendar builds a full object model of every line (~2.5 ms for a typical object): at 10,000 events
an initial sync spent most of its time there. Reading needs a dozen properties, so this reader
unfolds the text, splits it into components, and parses only the content lines calsync models,
into light stand-ins read.py's helpers accept (a str with `.params` and `.dt`, a dict of them).
Whatever it is not sure to read exactly as icalendar does (CONFERENCE properties, a TZID that is
not an IANA zone, repeated single-valued properties, unusual value types or escapes...) raises
_Fallback and the whole resource is read by icalendar instead.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from icalendar import Event

from calsync.model import RemoteEvent
from calsync.providers.ical.keys import recurrence_key
from calsync.providers.ical.read import (
    RECURRENCE_PROPERTIES,
    _remote_event,
    _updated,
    _zoneinfo,
    event_data_of,
    recurrence_lines,
)


class _Fallback(Exception):
    """Leave this resource to icalendar."""


class _Prop(str):
    """A property value (text unescaped, parameters decoded), and `.dt` for date / date-time ones."""

    __slots__ = ("dt", "params")
    params: dict[str, str]
    dt: Any


class _Comp(dict[str, Any]):
    """A VEVENT as name -> _Prop, or a list of _Prop when the property repeats (as icalendar does)."""


_READ = frozenset(
    (
        "DTSTART",
        "DTEND",
        "DURATION",
        "RECURRENCE-ID",
        "SUMMARY",
        "DESCRIPTION",
        "LOCATION",
        "STATUS",
        "ATTENDEE",
        "ORGANIZER",
        "URL",
        "UID",
        "SEQUENCE",
        "LAST-MODIFIED",
        "DTSTAMP",
    )
)
_SINGLE = frozenset(
    (
        "DTSTART",
        "DTEND",
        "DURATION",
        "RECURRENCE-ID",
        "UID",
        "SEQUENCE",
        "STATUS",
        "ORGANIZER",
        "LAST-MODIFIED",
        "DTSTAMP",
    )
)
_TIMES = frozenset(("DTSTART", "DTEND", "RECURRENCE-ID", "LAST-MODIFIED", "DTSTAMP"))
_TEXT_ESCAPES = {"\\": "\\", ",": ",", ";": ";", "n": "\n", "N": "\n", ":": ":"}
_ESCAPE = re.compile(r"\\(.?)", re.DOTALL)
_NAME_END = re.compile("[;:]")
_UNUSUAL_ESCAPE = re.compile(r"\\(?![,;nN:])")
_DURATION = re.compile(r"([+-])?P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?")


def _unfold(text: str) -> list[str]:
    if "\r\n" in text:
        text = text.replace("\r\n ", "").replace("\r\n\t", "")
        lines = text.split("\r\n")
    else:
        text = text.replace("\n ", "").replace("\n\t", "")
        lines = text.split("\n")
    return lines


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    if "\\\\" in value or _UNUSUAL_ESCAPE.search(value):
        return _ESCAPE.sub(_unescaped, value)  # (an escaped backslash: replacing in order would be wrong)
    return value.replace("\\n", "\n").replace("\\,", ",").replace("\\;", ";").replace("\\N", "\n").replace("\\:", ":")


def _unescaped(match: re.Match[str]) -> str:
    found = _TEXT_ESCAPES.get(match.group(1))
    if found is None:
        raise _Fallback("unusual escape")
    return found


def _param_value(raw: str) -> str:
    """One parameter value: unquoted, RFC 6868 caret escapes decoded; a list of values is not read here."""
    if raw.startswith('"'):
        if len(raw) < 2 or not raw.endswith('"') or '"' in raw[1:-1]:
            raise _Fallback("parameter quoting")
        raw = raw[1:-1]
    elif "," in raw:
        raise _Fallback("multi-valued parameter")
    if "^" in raw:
        raw = raw.replace("^^", "\x00").replace("^n", "\n").replace("^'", '"').replace("\x00", "^")
    return raw


def _content_line(line: str) -> tuple[str, dict[str, str], str]:
    """name, parameters (names upper-cased), raw value of one unfolded content line."""
    colon = line.find(":")
    if colon <= 0:
        raise _Fallback("no value")
    params: dict[str, str] = {}
    quote = line.find('"', 0, colon)
    if quote < 0:
        head, value = line[:colon], line[colon + 1 :]
        parts = head.split(";")
        for part in parts[1:]:
            key, eq, raw = part.partition("=")
            if not eq:
                raise _Fallback("parameter without value")
            params[key.upper()] = _param_value(raw)
        return parts[0].upper(), params, value
    # quoted parameter values may hold ':' ';' ','
    semi = line.find(";")
    name = line[:semi].upper()
    params = {}
    i, n = semi, len(line)
    while i < n and line[i] == ";":
        equals = line.find("=", i)
        if equals < 0:
            raise _Fallback("parameter without value")
        key = line[i + 1 : equals].upper()
        j = equals + 1
        if j < n and line[j] == '"':
            end = line.find('"', j + 1)
            if end < 0:
                raise _Fallback("unterminated quote")
            j = end + 1
        else:
            while j < n and line[j] not in ";:":
                j += 1
        params[key] = _param_value(line[equals + 1 : j])
        i = j
    if i >= n or line[i] != ":":
        raise _Fallback("malformed content line")
    return name, params, line[i + 1 :]


def _zone(tzid: str) -> ZoneInfo:
    zone = _zoneinfo(tzid) if "/" in tzid or tzid == "UTC" else None
    if zone is None or getattr(zone, "key", None) != tzid:
        raise _Fallback(f"TZID {tzid!r}")
    return zone


def _time_value(value: str, params: dict[str, str]) -> date | datetime:
    kind = params.get("VALUE", "").upper()
    if len(value) == 8 and kind in ("", "DATE") and value.isdigit():
        if "TZID" in params:
            raise _Fallback("TZID on a date")
        try:
            return date(int(value[:4]), int(value[4:6]), int(value[6:8]))
        except ValueError as exc:
            raise _Fallback(str(exc)) from None
    if (
        kind not in ("", "DATE-TIME")
        or len(value) not in (15, 16)
        or value[8] != "T"
        or not (value[:8] + value[9:15]).isdigit()
    ):
        raise _Fallback("unusual time value")
    zone: Any = None  # floating
    if len(value) == 16:
        if value[15] != "Z" or "TZID" in params:
            raise _Fallback("unusual UTC time")
        zone = UTC
    elif "TZID" in params:
        zone = _zone(params["TZID"])
    try:
        return datetime(
            int(value[:4]),
            int(value[4:6]),
            int(value[6:8]),
            int(value[9:11]),
            int(value[11:13]),
            int(value[13:15]),
            tzinfo=zone,
        )
    except ValueError as exc:
        raise _Fallback(str(exc)) from None


def _duration(value: str) -> timedelta:
    match = _DURATION.fullmatch(value.strip())
    if not match or value.strip() in ("P", "PT", "+P", "-P") or value.strip().endswith("T"):
        raise _Fallback("unusual duration")
    sign, weeks, days, hours, minutes, seconds = match.groups()
    delta = timedelta(
        weeks=int(weeks or 0),
        days=int(days or 0),
        hours=int(hours or 0),
        minutes=int(minutes or 0),
        seconds=int(seconds or 0),
    )
    return -delta if sign == "-" else delta


def _prop(name: str, params: dict[str, str], value: str) -> _Prop:
    if name in _TIMES:
        prop = _Prop(value)
        prop.dt = _time_value(value, params)
    elif name == "DURATION":
        prop = _Prop(value)
        prop.dt = _duration(value)
    elif name == "SEQUENCE":
        if not value.strip().lstrip("+-").isdigit():
            raise _Fallback("unusual SEQUENCE")
        prop = _Prop(value.strip())
    elif name in ("ATTENDEE", "ORGANIZER"):
        prop = _Prop(value)  # a cal-address: icalendar does not unescape it either
    else:
        prop = _Prop(_unescape(value))
    prop.params = params
    return prop


@dataclass
class _FastEvent:
    lines: list[str]  # raw (unfolded) lines, BEGIN:VEVENT ... END:VEVENT, subcomponents included
    comp: _Comp
    recurrence: list[str]  # raw RRULE / EXRULE / RDATE / EXDATE lines
    tzids: set[str]


def _read(text: str) -> tuple[list[str], dict[str, list[str]], list[_FastEvent]]:
    """(calendar property lines, VTIMEZONE blocks by TZID, VEVENTs) of one VCALENDAR."""
    lines = _unfold(text)
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines or lines[0].upper() != "BEGIN:VCALENDAR" or lines[-1].upper() != "END:VCALENDAR":
        raise _Fallback("not one VCALENDAR")
    cal_props: list[str] = []
    zones: dict[str, list[str]] = {}
    events: list[_FastEvent] = []
    i, n = 1, len(lines) - 1
    while i < n:
        line = lines[i]
        upper = line[:6].upper()
        if upper == "BEGIN:":
            kind = line[6:].strip().upper()
            if kind == "VEVENT":  # read in one pass that also finds its end
                event, i = _event(lines, i, n)
                events.append(event)
                continue
            end = _block_end(lines, i, n, kind)
            block = lines[i : end + 1]
            if kind == "VTIMEZONE":
                tzid = next((b[5:].strip() for b in block if b[:5].upper() == "TZID:"), None)
                if tzid is not None:
                    zones.setdefault(tzid, block)
            elif kind == "VCALENDAR":
                raise _Fallback("nested VCALENDAR")
            i = end + 1
            continue
        if upper == "END:VC" or not line.strip():
            raise _Fallback("stray line")
        cal_props.append(line)
        i += 1
    return cal_props, zones, events


def _block_end(lines: list[str], start: int, stop: int, kind: str) -> int:
    depth = 0
    for j in range(start, stop):
        head = lines[j][:6].upper()
        if head == "BEGIN:":
            depth += 1
        elif head[:4] == "END:":
            depth -= 1
            if depth == 0:
                if lines[j][4:].strip().upper() != kind:
                    raise _Fallback("unbalanced component")
                return j
    raise _Fallback("unterminated component")


def _event(lines: list[str], start: int, stop: int) -> tuple[_FastEvent, int]:
    """The VEVENT opening at lines[start], and the index just past its END line."""
    comp = _Comp()
    recurrence: list[str] = []
    tzids: set[str] = set()
    depth = 0
    for j in range(start + 1, stop):
        line = lines[j]
        found = _NAME_END.search(line)
        if found is None or found.start() == 0:
            raise _Fallback("no value")
        cut = found.start()
        name = line[:cut].upper()
        if name == "BEGIN" or name == "END":
            if line[cut] != ":":
                raise _Fallback("component line with parameters")
            if name == "BEGIN":
                depth += 1
            elif depth:
                depth -= 1
            elif line[cut + 1 :].strip().upper() != "VEVENT":
                raise _Fallback("unbalanced component")
            else:
                break
            continue
        parsed = None
        if line[cut] == ";" and ("TZID=" in line or "tzid=" in line):
            parsed = _content_line(line)
            if "TZID" in parsed[1]:
                tzids.add(parsed[1]["TZID"])
        if depth:
            continue  # a VALARM's own properties
        if name in RECURRENCE_PROPERTIES:
            recurrence.append(line)
            continue
        if name == "CONFERENCE":
            raise _Fallback("CONFERENCE")
        if name not in _READ:
            continue
        name, params, value = parsed or _content_line(line)
        prop = _prop(name, params, value)
        if name in comp:
            if name in _SINGLE:
                raise _Fallback(f"repeated {name}")
            existing = comp[name]
            comp[name] = [*existing, prop] if isinstance(existing, list) else [existing, prop]
        else:
            comp[name] = prop
    else:
        raise _Fallback("unterminated component")
    for tzid in tzids:
        _zone(tzid)
    if "DTSTART" not in comp:
        raise _Fallback("VEVENT without DTSTART")
    return _FastEvent(lines[start : j + 1], comp, recurrence, tzids), j + 1


def _fast_recurrence(lines: list[str]) -> list[str] | None:
    """icalendar's spelling of the recurrence lines (it reorders RRULE parts, for one), in
    recurrence_lines' order: each line on its own, as the properties are independent."""
    if not lines:
        return None
    spelled = [out for line in lines for out in _recurrence_line(line)]
    spelled.sort(key=lambda out: RECURRENCE_PROPERTIES.index(_NAME_END.split(out, 1)[0].upper()))
    return spelled or None


# An EXDATE / RDATE of plain dates or date-times (the usual shape), which icalendar writes back as
# it is: one zone name that needs no quoting, or VALUE=DATE / DATE-TIME, or nothing.
_PLAIN_DATE_LIST = re.compile(
    r"(?:EXDATE|RDATE)(?:;TZID=[A-Za-z0-9_+/-]+(?=:\d{8}T\d{6}(?:,|\Z))|;VALUE=DATE(?=:\d{8}(?:,|\Z))"
    r"|;VALUE=DATE-TIME(?=:\d{8}T))?:(\d{8}(?:T\d{6}Z?)?)(?:,\d{8}(?:T\d{6}Z?)?)*"
)


@functools.lru_cache(maxsize=1024)
def _recurrence_line(line: str) -> tuple[str, ...]:
    """One recurrence line as icalendar writes it (rules repeat across a calendar, hence the cache).
    A plain date list is written back unchanged once its values are checked; anything else goes
    through icalendar, alone in a VEVENT (a few hundred microseconds)."""
    match = _PLAIN_DATE_LIST.fullmatch(line)
    if match is not None and _plain_values(line[line.index(":") + 1 :], len(match.group(1))):
        return (line,)
    try:
        comp = Event.from_ical("BEGIN:VEVENT\r\n" + line + "\r\nEND:VEVENT\r\n")
    except (ValueError, IndexError, KeyError) as exc:
        raise _Fallback(str(exc)) from None
    assert isinstance(comp, Event)
    return tuple(recurrence_lines(comp) or ())


def _plain_values(values: str, width: int) -> bool:
    """Every value of a date list has the first one's shape (8, 15 or 16 characters) and is a real
    date or time; a mix, or 2026-02-30, is left to icalendar."""
    for value in values.split(","):
        if len(value) != width:
            return False
        try:
            if width == 8:
                date(int(value[:4]), int(value[4:6]), int(value[6:8]))
            else:
                datetime(
                    int(value[:4]),
                    int(value[4:6]),
                    int(value[6:8]),  # only checks the fields
                    int(value[9:11]),
                    int(value[11:13]),
                    int(value[13:15]),
                    tzinfo=UTC,
                )
        except ValueError:
            return False
    return True


def _fast_remote_events(base_id: str, etag: str, text: str) -> list[RemoteEvent]:
    cal_props, zones, events = _read(text)
    if not events:
        raise _Fallback("no VEVENT")  # (a VTODO resource and the like: icalendar decides)
    multi = len(events) > 1
    events.sort(key=lambda e: "RECURRENCE-ID" in e.comp)
    out: list[RemoteEvent] = []
    seen: set[str | None] = set()
    for event in events:
        key = recurrence_key(event.comp)
        if key in seen:
            continue
        seen.add(key)
        if multi:
            used = [line for tzid, block in zones.items() if tzid in event.tzids for line in block]
            ics = "\r\n".join(["BEGIN:VCALENDAR", *cal_props, *used, *event.lines, "END:VCALENDAR", ""])
        else:
            ics = text
        data = event_data_of(event.comp, ics, _fast_recurrence(event.recurrence))
        out.append(_remote_event(base_id, key, None if multi else etag, data, _updated(event.comp)))
    return out
