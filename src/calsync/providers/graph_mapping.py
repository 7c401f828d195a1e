"""Microsoft Graph event JSON <-> calsync EventData.

Mapping (Graph -> EventData)
    subject -> title; body.content -> description as plain text (Outlook keeps every body as an HTML
    document; html_text renders it, and the original HTML is kept in ``extra["graph"]["bodyHtml"]``
    and written back as it was while the text is unchanged, so formatting survives a round trip that
    did not touch the description); location.displayName -> location; start/end
    (read in UTC thanks to ``Prefer: outlook.timezone="UTC"``) -> canonical UTC, or dates when
    ``isAllDay``; originalStartTimeZone -> time_zone when it is an IANA name other than UTC;
    attendees (emailAddress.address/name, status.response, type optional); iCalUId -> ical_uid;
    seriesMasterId -> series_remote_id and originalStart -> original_start for occurrences/exceptions.
    ``@removed`` and a cancelled single event or master (``isCancelled``) are RemoteDeletion; a
    cancelled occurrence is a RemoteEvent with status "cancelled". A Teams meeting
    (onlineMeeting.joinUrl) is conference ``{"type": "teams", "name": "Microsoft Teams", "join_url",
    "conference_id"}``.

Recurrence (RRULE <-> patternedRecurrence)
    Sources: recurrencePattern / recurrenceRange resource pages (learn.microsoft.com/graph/api/resources/
    recurrencepattern, .../recurrencerange). A series master's ``recurrence`` becomes one RRULE line
    (plus an EXDATE line, see graph_series) and the other way round:

    ===================================  ==================================================================
    RRULE                                Graph pattern
    ===================================  ==================================================================
    FREQ=DAILY                           daily
    FREQ=WEEKLY;BYDAY=MO,WE[;WKST=SU]    weekly, daysOfWeek, firstDayOfWeek (RFC default WKST=MO, so an
                                         absent WKST is written as monday and monday is read as absent)
    FREQ=MONTHLY;BYMONTHDAY=15           absoluteMonthly, dayOfMonth
    FREQ=MONTHLY;BYDAY=2TU / -1FR        relativeMonthly, index first..fourth / last, one day
    FREQ=MONTHLY;BYDAY=TU,TH;BYSETPOS=2  relativeMonthly with several days (Graph: "the first day that
                                         satisfies the pattern", counted over all the listed days)
    FREQ=YEARLY;BYMONTH=3;BYMONTHDAY=15  absoluteYearly, month, dayOfMonth
    FREQ=YEARLY;BYMONTH=11;BYDAY=2TH     relativeYearly
    INTERVAL                             interval
    COUNT / UNTIL / neither              range numbered / endDate / noEnd, startDate = the start's date
    ===================================  ==================================================================

    Missing BY* parts are filled from the start as RFC 5545 does (FREQ=WEEKLY -> its weekday, MONTHLY ->
    its day of month, YEARLY -> its month and day). Ranges are counted in ``recurrenceTimeZone`` = the
    event's time zone (UTC when it has none; all-day series float). UNTIL is an instant, endDate a local
    date: endDate is the last local date whose occurrence starts at or before UNTIL, and reading writes
    UNTIL as that date's occurrence start in UTC (a DATE for all-day series). ``graph_to_rrule`` spells
    every part Graph holds (a fixed point of the round trip); what the reader hands the engine
    (``recurrence_lines``) is then re-spelled by providers/canonical.py as every provider's reader
    does: the parts the start implies (BYDAY of a weekly series, BYMONTHDAY, BYMONTH) and a week start
    that cannot matter are left out, so the rule calsync wrote reads back as that rule, not as an edit.
    ``same_recurrence`` compares the same way, so such a difference never re-sends (reshapes) a series.

    Rules Graph cannot express raise ``UnsupportedRecurrence`` (a ProviderError, status 422, reason
    ``unsupportedRecurrence``) *before* anything is sent: FREQ other than DAILY..YEARLY, several RRULEs,
    RDATE (or any line but RRULE/EXDATE), BYHOUR/BYWEEKNO/BYYEARDAY..., BYSETPOS other than one of
    1..4/-1 over plain weekdays, ordinals other than 1..4/-1 or several ordinal days, BYMONTHDAY
    negative or several, BYMONTH on MONTHLY, COUNT with UNTIL, and a start that is not itself an
    occurrence of the rule (RFC 5545 counts DTSTART anyway, Graph would silently drop it). The outbox
    records the row as failed with that message (4xx: not retried) rather than writing a single event
    that a later read would take as "the series was removed". Reading a Graph pattern type we do not
    know leaves ``recurrence`` None (the raw JSON stays in ``extra["graph"]["recurrence"]``).

    ``event_to_graph`` sends ``recurrence`` on create, and on update only when asked (the provider
    compares with the master as Graph holds it: re-sending reshapes the series and drops exceptions).

Conferences we manage (``conference["provider"]`` set, e.g. Zoom)
    Graph has no field for third-party meetings: ``onlineMeetingUrl`` and ``onlineMeeting`` are
    read-only, and ``isOnlineMeeting`` / ``onlineMeetingProvider`` only make Teams / Skype meetings
    (event resource page; never set here). So the conference is written as a marked block at the end of
    the HTML body (read back and stripped from the description), and, when the user has no location of
    their own, as the event's ``location`` (displayName and locationUri = the join link; Graph mirrors
    it into ``locations``), which Outlook shows on the location line with a clickable link. A location
    equal to the conference's join link is read back as "no location", so the user's description and
    location come back unchanged and the content hash is stable (no echo loop). A user location is
    never replaced.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import DAILY, MONTHLY, WEEKLY, YEARLY, rrule, weekday

from calsync.model import (
    Attendee,
    EventData,
    RemoteChange,
    RemoteDeletion,
    RemoteEvent,
    canonical_instant,
    canonical_time,
)
from calsync.providers.base import ProviderError
from calsync.providers.canonical import (
    canonical_recurrence,
    canonical_rule,
    canonical_zone,
)
from calsync.providers.html_text import html_to_text, text_to_html

# writable Graph fields calsync does not model but carries back when it writes an event
PRESERVED_FIELDS = ("categories", "importance", "sensitivity", "showAs", "isReminderOn", "reminderMinutesBeforeStart")
KEPT_FIELDS = (*PRESERVED_FIELDS, "recurrence", "isOnlineMeeting", "onlineMeetingProvider", "type")
_RESPONSES = {
    "accepted": "accepted",
    "declined": "declined",
    "tentativelyAccepted": "tentative",
    "organizer": "accepted",
    "none": "needsAction",
    "notResponded": "needsAction",
}
# a master's ETag carries a digest of its derived EXDATEs after this mark; strip it for If-Match
EXDATES_MARK = "#exdates:"
_CONFERENCE_RE = re.compile(r'<div id="calsync-conference" data-conference="([^"]*)">.*?</div>', re.DOTALL)


# --- recurrence: RRULE <-> patternedRecurrence -------------------------------------------------

_GRAPH_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_ICAL_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_INDEX_OF = {1: "first", 2: "second", 3: "third", 4: "fourth", -1: "last"}
_ORDINAL_OF = {v: k for k, v in _INDEX_OF.items()}
_KNOWN_PARTS = {"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "BYMONTHDAY", "BYMONTH", "BYSETPOS", "WKST"}
_BYDAY_RE = re.compile(r"^([+-]?\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)$")


class UnsupportedRecurrence(ProviderError):
    """A recurrence Graph's patternedRecurrence cannot express. Status 422, so the outbox records the
    failure once instead of retrying it for ever (see the module docstring)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"Graph cannot express this recurrence: {message}", status=422, reason="unsupportedRecurrence")


@dataclass(frozen=True)
class SeriesAnchor:
    """Where a series starts, in the zone its rule is counted in (Graph's recurrenceTimeZone)."""

    local: datetime  # naive wall time of the first occurrence (midnight for all-day)
    zone_name: str  # IANA name, "UTC" when the event has none
    all_day: bool

    @property
    def zone(self) -> ZoneInfo | timezone:
        return _zone(self.zone_name) or UTC

    def instant(self, local: datetime) -> datetime:
        return local.replace(tzinfo=self.zone).astimezone(UTC)


def anchor_of(data: EventData) -> SeriesAnchor:
    """The anchor of an EventData master: all-day dates float, timed starts are read in its time zone."""
    if data.all_day:
        return SeriesAnchor(datetime.fromisoformat(data.start[:10]), "UTC", True)
    zone = _zone(data.time_zone)
    instant = datetime.fromisoformat(data.start)
    local = instant.astimezone(zone or UTC).replace(tzinfo=None)
    return SeriesAnchor(local, data.time_zone if zone is not None and data.time_zone else "UTC", False)


def _parse_rule(line: str) -> dict[str, str]:
    text = line.split(":", 1)[1] if line.upper().startswith("RRULE") else line
    parts: dict[str, str] = {}
    for chunk in text.strip().split(";"):
        if not chunk:
            continue
        name, sep, value = chunk.partition("=")
        name = name.strip().upper()
        if not sep or name in parts:
            raise UnsupportedRecurrence(f"malformed rule part {chunk!r}")
        parts[name] = value.strip().upper()
    unknown = set(parts) - _KNOWN_PARTS
    if unknown:
        raise UnsupportedRecurrence(f"rule parts {', '.join(sorted(unknown))} have no Graph equivalent")
    return parts


def _ints(value: str | None, name: str) -> list[int]:
    if not value:
        return []
    try:
        return [int(v) for v in value.split(",")]
    except ValueError:
        raise UnsupportedRecurrence(f"{name}={value} is not a list of numbers") from None


def _days(value: str | None) -> list[tuple[int | None, int]]:
    """BYDAY as (ordinal or None, weekday 0=Monday)."""
    out = []
    for chunk in (value or "").split(","):
        if not chunk:
            continue
        match = _BYDAY_RE.match(chunk)
        if match is None:
            raise UnsupportedRecurrence(f"BYDAY value {chunk!r} is not understood")
        out.append((int(match.group(1)) if match.group(1) else None, _ICAL_DAYS.index(match.group(2))))
    return out


def _parse_until(value: str, anchor: SeriesAnchor) -> date:
    """UNTIL as Graph's endDate: the last local date whose occurrence still starts at or before UNTIL."""
    try:
        if len(value) == 8:
            return datetime.strptime(value, "%Y%m%d").date()  # noqa: DTZ007 (a date)
        moment = datetime.strptime(value.rstrip("Z"), "%Y%m%dT%H%M%S")  # noqa: DTZ007 (UTC or local time: see below)
    except ValueError:
        raise UnsupportedRecurrence(f"UNTIL={value} is not a date or date-time") from None
    local = moment.replace(tzinfo=UTC).astimezone(anchor.zone).replace(tzinfo=None) if value.endswith("Z") else moment
    if anchor.all_day:
        return local.date()
    return local.date() if local.time() >= anchor.local.time() else local.date() - timedelta(days=1)


def rrule_to_graph(lines: list[str], anchor: SeriesAnchor) -> tuple[dict[str, Any], list[str]]:
    """(Graph patternedRecurrence, EXDATEs as canonical boundaries) for a master's recurrence lines.

    Raises UnsupportedRecurrence for what Graph cannot hold (see the module docstring)."""
    rules = [ln for ln in lines if ln.upper().startswith("RRULE")]
    others = [ln for ln in lines if not ln.upper().startswith(("RRULE", "EXDATE"))]
    if len(rules) != 1:
        raise UnsupportedRecurrence(f"{len(rules)} RRULE lines (Graph holds exactly one pattern)")
    if others:
        raise UnsupportedRecurrence(f"{others[0].split(':', 1)[0].split(';', 1)[0]} (only RRULE and EXDATE map)")
    parts = _parse_rule(rules[0])
    pattern = _pattern_of(parts, anchor)
    if "COUNT" in parts and "UNTIL" in parts:
        raise UnsupportedRecurrence("COUNT and UNTIL together")
    rng: dict[str, Any] = {
        "type": "noEnd",
        "startDate": anchor.local.date().isoformat(),
        "recurrenceTimeZone": anchor.zone_name,
    }
    if "COUNT" in parts:
        (count,) = _ints(parts["COUNT"], "COUNT")[:1] or [0]
        if count < 1:
            raise UnsupportedRecurrence(f"COUNT={parts['COUNT']}")
        rng.update(type="numbered", numberOfOccurrences=count)
    elif "UNTIL" in parts:
        rng.update(type="endDate", endDate=_parse_until(parts["UNTIL"], anchor).isoformat())
    recurrence = {"pattern": pattern, "range": rng}
    if _first_local(recurrence, anchor) != anchor.local:
        raise UnsupportedRecurrence("the event's start is not an occurrence of its rule (Graph would drop it)")
    exdates = sorted({x for ln in lines if ln.upper().startswith("EXDATE") for x in _parse_dates(ln, anchor)})
    return recurrence, exdates


def _pattern_of(parts: dict[str, str], anchor: SeriesAnchor) -> dict[str, Any]:
    freq = parts.get("FREQ")
    (interval,) = _ints(parts.get("INTERVAL"), "INTERVAL")[:1] or [1]
    if interval < 1:
        raise UnsupportedRecurrence(f"INTERVAL={interval}")
    days = _days(parts.get("BYDAY"))
    monthdays = _ints(parts.get("BYMONTHDAY"), "BYMONTHDAY")
    months = _ints(parts.get("BYMONTH"), "BYMONTH")
    setpos = _ints(parts.get("BYSETPOS"), "BYSETPOS")
    wkst = parts.get("WKST", "MO")
    if wkst not in _ICAL_DAYS:
        raise UnsupportedRecurrence(f"WKST={wkst}")
    start = anchor.local
    pattern: dict[str, Any] = {"interval": interval}
    if freq == "DAILY":
        if days or monthdays or months or setpos:
            raise UnsupportedRecurrence("a DAILY rule with BY* parts")
        pattern["type"] = "daily"
    elif freq == "WEEKLY":
        if monthdays or months or setpos or any(n is not None for n, _ in days):
            raise UnsupportedRecurrence("a WEEKLY rule with BYMONTHDAY, BYMONTH, BYSETPOS or day ordinals")
        chosen = sorted({d for _, d in days}) or [start.weekday()]
        pattern.update(
            type="weekly",
            daysOfWeek=[_GRAPH_DAYS[d] for d in chosen],
            firstDayOfWeek=_GRAPH_DAYS[_ICAL_DAYS.index(wkst)],
        )
    elif freq in ("MONTHLY", "YEARLY"):
        yearly = freq == "YEARLY"
        if months and (not yearly or len(months) != 1 or not 1 <= months[0] <= 12):
            raise UnsupportedRecurrence("BYMONTH other than one month of a YEARLY rule")
        month = months[0] if months else start.month
        if days:
            index, chosen = _relative(days, setpos)
            if yearly and not months:
                raise UnsupportedRecurrence("a YEARLY rule with BYDAY but no BYMONTH")
            pattern.update(
                type="relativeYearly" if yearly else "relativeMonthly",
                index=index,
                daysOfWeek=[_GRAPH_DAYS[d] for d in chosen],
            )
        else:
            if setpos or len(monthdays) > 1 or (monthdays and not 1 <= monthdays[0] <= 31):
                raise UnsupportedRecurrence("BYSETPOS without BYDAY, or other than one positive BYMONTHDAY")
            if yearly and monthdays and not months:
                raise UnsupportedRecurrence("a YEARLY rule with BYMONTHDAY but no BYMONTH")
            pattern.update(
                type="absoluteYearly" if yearly else "absoluteMonthly",
                dayOfMonth=monthdays[0] if monthdays else start.day,
            )
        if yearly:
            pattern["month"] = month
    else:
        raise UnsupportedRecurrence(f"FREQ={freq} (Graph repeats daily, weekly, monthly or yearly)")
    return pattern


def _relative(days: list[tuple[int | None, int]], setpos: list[int]) -> tuple[str, list[int]]:
    """Graph's (index, daysOfWeek) for BYDAY=2TU or BYDAY=TU,TH;BYSETPOS=2 ("the 2nd of those days")."""
    ordinals = {n for n, _ in days}
    chosen = sorted({d for _, d in days})
    if ordinals == {None} and len(setpos) == 1 and setpos[0] in _INDEX_OF:
        return _INDEX_OF[setpos[0]], chosen
    if len(days) == 1 and not setpos and days[0][0] in _INDEX_OF:
        return _INDEX_OF[days[0][0]], chosen
    raise UnsupportedRecurrence("BYDAY/BYSETPOS other than one position (1st-4th or last) of some weekdays")


def _parse_dates(line: str, anchor: SeriesAnchor) -> list[str]:
    """EXDATE values as canonical boundaries (UTC instants, or dates for all-day series)."""
    head, _, values = line.partition(":")
    params = {k.upper(): v for k, _, v in (p.partition("=") for p in head.split(";")[1:])}
    zone = _zone(params.get("TZID")) or anchor.zone
    out = []
    for value in filter(None, (v.strip() for v in values.split(","))):
        try:
            if len(value) == 8:
                day = datetime.strptime(value, "%Y%m%d")  # noqa: DTZ007 (only its date is used)
                out.append(
                    day.date().isoformat()
                    if anchor.all_day
                    else canonical_instant(anchor.instant(datetime.combine(day.date(), anchor.local.time())))
                )
                continue
            moment = datetime.strptime(value.rstrip("Z"), "%Y%m%dT%H%M%S")  # noqa: DTZ007 (zone set below)
        except ValueError:
            raise UnsupportedRecurrence(f"EXDATE value {value!r}") from None
        aware = moment.replace(tzinfo=UTC if value.endswith("Z") else zone)
        out.append(aware.astimezone(anchor.zone).date().isoformat() if anchor.all_day else canonical_instant(aware))
    return out


def graph_to_rrule(recurrence: dict[str, Any], anchor: SeriesAnchor) -> str:
    """The RRULE line for a Graph patternedRecurrence (canonical part order, defaults left out)."""
    pattern, rng = recurrence.get("pattern") or {}, recurrence.get("range") or {}
    kind = str(pattern.get("type") or "")
    freq = {
        "daily": "DAILY",
        "weekly": "WEEKLY",
        "absoluteMonthly": "MONTHLY",
        "relativeMonthly": "MONTHLY",
        "absoluteYearly": "YEARLY",
        "relativeYearly": "YEARLY",
    }.get(kind or "")
    if freq is None:
        raise UnsupportedRecurrence(f"Graph pattern type {kind!r}")
    parts = [f"FREQ={freq}"]
    interval = int(pattern.get("interval") or 1)
    if interval != 1:
        parts.append(f"INTERVAL={interval}")
    if rng.get("type") == "numbered":
        parts.append(f"COUNT={int(rng['numberOfOccurrences'])}")
    elif rng.get("type") == "endDate":
        end = date.fromisoformat(rng["endDate"])
        if anchor.all_day:
            parts.append(f"UNTIL={end:%Y%m%d}")
        else:
            last = anchor.instant(datetime.combine(end, anchor.local.time()))
            parts.append(f"UNTIL={last:%Y%m%dT%H%M%SZ}")
    days = sorted(_GRAPH_DAYS.index(str(d).lower()) for d in pattern.get("daysOfWeek") or [])
    byday = ",".join(_ICAL_DAYS[d] for d in days)
    if kind.endswith("Yearly"):
        parts.append(f"BYMONTH={int(pattern['month'])}")
    if kind.startswith("absolute"):
        parts.append(f"BYMONTHDAY={int(pattern['dayOfMonth'])}")
    if kind == "weekly":
        parts.append(f"BYDAY={byday}")
    if kind.startswith("relative"):
        ordinal = _ORDINAL_OF[str(pattern.get("index") or "first").lower()]
        parts.extend([f"BYDAY={ordinal}{byday}"] if len(days) == 1 else [f"BYDAY={byday}", f"BYSETPOS={ordinal}"])
    first = str(pattern.get("firstDayOfWeek") or "sunday").lower()
    if kind == "weekly" and first != "monday":
        parts.append(f"WKST={_ICAL_DAYS[_GRAPH_DAYS.index(first)]}")
    return "RRULE:" + ";".join(parts)


def exdate_line(exdates: list[str], all_day: bool) -> str:
    """One EXDATE line for canonical boundaries: VALUE=DATE for all-day series, UTC otherwise."""
    if all_day:
        return "EXDATE;VALUE=DATE:" + ",".join(x.replace("-", "") for x in exdates)
    return "EXDATE:" + ",".join(datetime.fromisoformat(x).strftime("%Y%m%dT%H%M%SZ") for x in exdates)


_FREQS = {
    "daily": DAILY,
    "weekly": WEEKLY,
    "absoluteMonthly": MONTHLY,
    "relativeMonthly": MONTHLY,
    "absoluteYearly": YEARLY,
    "relativeYearly": YEARLY,
}


def _rule_of(recurrence: dict[str, Any], anchor: SeriesAnchor) -> rrule:
    """dateutil's view of a Graph recurrence, with Graph's semantics: the first occurrence is the first
    day matching the pattern on or after range.startDate, and endDate includes its whole day."""
    pattern, rng = recurrence["pattern"], recurrence["range"]
    kind = pattern["type"]
    kwargs: dict[str, Any] = {
        "dtstart": datetime.combine(date.fromisoformat(rng["startDate"]), anchor.local.time()),
        "interval": int(pattern.get("interval") or 1),
        "wkst": _GRAPH_DAYS.index(str(pattern.get("firstDayOfWeek") or "sunday").lower()),
    }
    days = [weekday(_GRAPH_DAYS.index(str(d).lower())) for d in pattern.get("daysOfWeek") or []]
    if kind == "weekly" or kind.startswith("relative"):
        kwargs["byweekday"] = days
    if kind.startswith("relative"):
        kwargs["bysetpos"] = _ORDINAL_OF[str(pattern.get("index") or "first").lower()]
    if kind.startswith("absolute"):
        kwargs["bymonthday"] = int(pattern["dayOfMonth"])
    if kind.endswith("Yearly"):
        kwargs["bymonth"] = int(pattern["month"])
    if rng.get("type") == "numbered":
        kwargs["count"] = int(rng["numberOfOccurrences"])
    elif rng.get("type") == "endDate":
        kwargs["until"] = datetime.combine(date.fromisoformat(rng["endDate"]), datetime.max.time())
    return rrule(_FREQS[kind], **kwargs)  # type: ignore[arg-type]  # dateutil's stubs: FREQ as a Literal


def _first_local(recurrence: dict[str, Any], anchor: SeriesAnchor) -> datetime | None:
    return _rule_of(recurrence, anchor).after(anchor.local, inc=True)


def expected_starts(recurrence: dict[str, Any], anchor: SeriesAnchor, lo: datetime, hi: datetime) -> list[str]:
    """Canonical starts the pattern yields in [lo, hi) (what Graph should list as instances)."""
    rule = _rule_of(recurrence, anchor)
    lo_local = lo.astimezone(anchor.zone).replace(tzinfo=None) - timedelta(days=1)
    hi_local = hi.astimezone(anchor.zone).replace(tzinfo=None) + timedelta(days=1)
    out = []
    for local in rule.between(lo_local, hi_local, inc=True):
        instant = anchor.instant(local)
        if lo <= instant < hi:
            out.append(local.date().isoformat() if anchor.all_day else canonical_instant(instant))
    return out


# --- mapping -----------------------------------------------------------------------------


def _graph_instant(value: dict[str, Any] | None) -> datetime | None:
    """A dateTimeTimeZone as an aware datetime (UTC when the zone is UTC or unknown)."""
    if not value or not value.get("dateTime"):
        return None
    text = value["dateTime"]
    if "." in text:  # Graph sends 7 fractional digits, more than fromisoformat takes
        text = text.split(".", 1)[0]
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_zone(value.get("timeZone")) or UTC)
    return parsed


def _zone(name: str | None) -> ZoneInfo | None:
    if not name or name.upper() in ("UTC", "Z"):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _boundary(value: dict[str, Any] | None, all_day: bool) -> str:
    instant = _graph_instant(value)
    if instant is None:
        return ""
    if all_day:  # all-day events keep their midnights in their own zone
        return value["dateTime"][:10] if value else ""
    return canonical_instant(instant)


def exdates_etag(etag: str, exdates: list[str] | None) -> str:
    """A master's ETag with a digest of its derived EXDATEs: they are not part of Graph's changeKey,
    yet a newly deleted occurrence must read as a change of the master."""
    if not exdates:
        return etag
    return etag + EXDATES_MARK + hashlib.sha256(",".join(sorted(exdates)).encode()).hexdigest()[:16]


def graph_etag(etag: str | None) -> str | None:
    """The ETag Graph knows (for If-Match): ours without the derived-EXDATE digest."""
    return etag.split(EXDATES_MARK, 1)[0] if etag else etag


def _conference_from_body(content: str) -> tuple[str, dict[str, Any] | None]:
    """(description without our conference block, the conference it described)."""
    match = _CONFERENCE_RE.search(content)
    if match is None:
        return content, None
    try:
        conference = json.loads(html.unescape(match.group(1)))
    except ValueError:
        conference = None
    return content[: match.start()] + content[match.end() :], conference if isinstance(conference, dict) else None


def _own_conference_location(location: dict[str, Any], conference: dict[str, Any] | None) -> bool:
    """Is this Graph location the one we wrote for our conference (its join link, no user location)?"""
    url = (conference or {}).get("join_url")
    return bool(url) and location.get("displayName") == url


def change_from_graph(item: dict[str, Any], exdates: list[str] | None = None) -> RemoteChange:
    """A Graph event (or ``@removed`` stub) as a neutral change.

    A series master's ``recurrence`` becomes one RRULE line, plus an EXDATE line for ``exdates`` (the
    occurrences the caller found missing from the master's instances; Graph lists no deletions)."""
    series = item.get("seriesMasterId")
    if "@removed" in item or (item.get("isCancelled") and not series):
        return RemoteDeletion(remote_id=item["id"])
    all_day = bool(item.get("isAllDay"))
    start = _boundary(item.get("start"), all_day)
    end = _boundary(item.get("end"), all_day)
    original = canonical_time(item["originalStart"], False) if item.get("originalStart") and series else None
    if original and all_day:  # an all-day occurrence is due on a day (a date, as Google and iCalendar say)
        day_zone = _zone(item.get("originalStartTimeZone")) or UTC
        original = datetime.fromisoformat(original).astimezone(day_zone).date().isoformat()
    body = item.get("body") or {}
    content, conference = _conference_from_body(body.get("content") or "")
    kept = {k: item[k] for k in KEPT_FIELDS if item.get(k) is not None}
    if str(body.get("contentType") or "html").lower() == "html":
        kept["bodyHtml"] = content
        content = html_to_text(content)
    online = item.get("onlineMeeting") or {}
    if conference is None and online.get("joinUrl"):
        conference = {
            "type": "teams",
            "name": "Microsoft Teams",
            "conference_id": online.get("conferenceId"),
            "join_url": online["joinUrl"],
            "provider": None,
        }
    location = item.get("location") or {}
    zone = item.get("originalStartTimeZone")
    time_zone = canonical_zone(zone) if not all_day and _zone(zone) is not None else None
    data = EventData(
        title=item.get("subject") or "",
        start=start,
        end=end or start,
        all_day=all_day,
        time_zone=time_zone,
        description=content or None,
        location=None if _own_conference_location(location, conference) else location.get("displayName") or None,
        status="cancelled" if item.get("isCancelled") else "confirmed",
        recurrence=None,
        original_start=original,
        attendees=[
            Attendee(
                email=(a.get("emailAddress") or {}).get("address", ""),
                name=(a.get("emailAddress") or {}).get("name"),
                response=_RESPONSES.get((a.get("status") or {}).get("response", "none"), "needsAction"),
                optional=a.get("type") == "optional",
            )
            for a in item.get("attendees") or []
        ],
        conference=conference,
        ical_uid=item.get("iCalUId"),
        extra={"graph": kept},
    )
    etag = item.get("@odata.etag") or item.get("changeKey") or ""
    if item.get("recurrence") and not series and start:
        data.recurrence = recurrence_lines(item["recurrence"], anchor_of(data), exdates)
        etag = exdates_etag(etag, exdates)
    return RemoteEvent(
        remote_id=item["id"],
        etag=etag,
        data=data,
        series_remote_id=series,
        updated=item.get("lastModifiedDateTime"),
        # our local id when calsync created it (adoption after a crash); a copy made again carries
        # `<local id>.<suffix>` (Capabilities.server_assigns_ids)
        client_id=str(item["transactionId"]).split(".", 1)[0] if item.get("transactionId") else None,
    )


def recurrence_lines(recurrence: dict[str, Any], anchor: SeriesAnchor, exdates: list[str] | None) -> list[str] | None:
    """EventData.recurrence for a Graph master; None for a pattern type we do not know (kept in extra)."""
    try:
        lines = [graph_to_rrule(recurrence, anchor)]
    except (UnsupportedRecurrence, KeyError, ValueError):
        return None
    if exdates:
        lines.append(exdate_line(sorted(exdates), anchor.all_day))
    # spelled as every provider's reader spells it (BYDAY=MO of a Monday series, WKST where it does
    # not count, INTERVAL=1 left out): calsync's own rule must read back as the rule it wrote
    return canonical_recurrence(lines, anchor.local.date() if anchor.all_day else anchor.local)


def _graph_time(value: str, all_day: bool, time_zone: str | None) -> dict[str, str]:
    if all_day:
        return {"dateTime": f"{value[:10]}T00:00:00", "timeZone": (time_zone or "UTC") if _zone(time_zone) else "UTC"}
    instant = datetime.fromisoformat(value)
    zone = _zone(time_zone)
    if zone is not None:
        return {"dateTime": instant.astimezone(zone).replace(tzinfo=None).isoformat(), "timeZone": time_zone or "UTC"}
    return {"dateTime": instant.astimezone(UTC).replace(tzinfo=None).isoformat(), "timeZone": "UTC"}


def _conference_block(conference: dict[str, Any]) -> str:
    url = html.escape(conference.get("join_url") or "")
    name = html.escape(conference.get("name") or "the meeting")
    payload = html.escape(json.dumps(conference, sort_keys=True, separators=(",", ":")), quote=True)
    return f'<div id="calsync-conference" data-conference="{payload}">Join {name}: <a href="{url}">{url}</a></div>'


def series_of(data: EventData) -> tuple[dict[str, Any], list[str]] | None:
    """(Graph recurrence, EXDATEs) of a series master; None for a single event or an exception.
    Raises UnsupportedRecurrence for rules Graph cannot hold."""
    if not data.recurrence or data.original_start:
        return None
    return rrule_to_graph(data.recurrence, anchor_of(data))


def same_recurrence(a: dict[str, Any] | None, b: dict[str, Any] | None, anchor: SeriesAnchor) -> bool:
    """Do two Graph recurrences describe the same series (Graph echoes defaults we never send)?

    Compared as canonical rules: a firstDayOfWeek that cannot change the series (Outlook says sunday,
    calsync's copy read back says nothing, so monday is sent) is no reason to re-send the rule."""
    if a is None or b is None:
        return a is b
    first = anchor.local.date() if anchor.all_day else anchor.local
    try:
        key_a = (canonical_rule(graph_to_rrule(a, anchor), first), (a.get("range") or {}).get("startDate"))
        key_b = (canonical_rule(graph_to_rrule(b, anchor), first), (b.get("range") or {}).get("startDate"))
    except (UnsupportedRecurrence, KeyError, ValueError):
        return False
    return key_a == key_b


def event_to_graph(data: EventData, *, create: bool = False, recurrence: bool | None = None) -> dict[str, Any]:
    """Body for POST/PATCH: the modelled fields, plus preserved Graph fields carried back.

    A master's recurrence is sent on create, and on update only when ``recurrence`` is true (the caller
    saw the rule change: re-sending it reshapes the series and drops its exceptions)."""
    kept = (data.extra or {}).get("graph") or {}
    body: dict[str, Any] = {k: kept[k] for k in PRESERVED_FIELDS if k in kept}
    series = series_of(data)
    if series is not None and (create if recurrence is None else recurrence):
        body["recurrence"] = series[0]
    text = data.description or ""
    original = kept.get("bodyHtml")
    content = original if original is not None and html_to_text(original) == text else text_to_html(text)
    location: dict[str, Any] = {"displayName": data.location or ""}
    conference = data.conference
    if conference and conference.get("provider") and conference.get("join_url"):
        content = f"{content}{_conference_block(conference)}"
        if not data.location:  # Outlook shows the location line and makes the link clickable
            location = {
                "displayName": conference["join_url"],
                "locationUri": conference["join_url"],
                "locationType": "default",
            }
    body.update(
        {
            "subject": data.title,
            "body": {"contentType": "html", "content": content},
            "location": location,
            "isAllDay": data.all_day,
            "start": _graph_time(data.start, data.all_day, data.time_zone),
            "end": _graph_time(data.end, data.all_day, data.time_zone),
            "attendees": [
                {
                    "type": "optional" if a.optional else "required",
                    "emailAddress": {"address": a.email, **({"name": a.name} if a.name else {})},
                }
                for a in data.attendees
            ],
        }
    )
    return body
