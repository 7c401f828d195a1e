"""One spelling for what providers spell differently but mean the same. Pure functions, no I/O.

Why: the three-way rule compares content hashes (EventData.content_hash). When calsync writes an
event and the provider gives it back re-spelled (Graph rebuilds an RRULE from its pattern and adds
BYDAY=MO; a CalDAV server, through icalendar, reorders the rule's parts; Google names the UTC zone
calsync had to give a series; Outlook answers None for an empty location), the copy reads as
changed, and if the local side changed meanwhile a conflict asks a person to choose between two
equal things. Every provider's reader passes what it maps through these helpers, so the same
meaning reads as the same EventData wherever it comes from. (The hash function itself is left
alone: changing it would make every stored event look changed.)

Only re-spellings whose meaning is provably the same are folded (RFC 5545 section 3.3.10):

- RRULE parts in one order (icalendar's, the RFC's: FREQ, UNTIL, COUNT, INTERVAL, BYSECOND ...
  BYSETPOS, WKST), names and values upper case, numbers without sign or leading zeros, BY* lists
  (sets) sorted and without repeats;
- defaults left out: INTERVAL=1; WKST=MO; any WKST where it cannot matter (not WEEKLY and no
  BYWEEKNO; WEEKLY with INTERVAL=1, or with one weekday only, that of DTSTART); and, given the
  series' first start as the rule sees it (its wall time in the rule's zone), the BY* parts RFC 5545
  derives from DTSTART when absent: WEEKLY BYDAY=<DTSTART's weekday>, MONTHLY BYMONTHDAY=<its day>,
  YEARLY BYMONTH=<its month> (with or without BYMONTHDAY=<its day>), each only when no other BY*
  part changes what the default would be;
- EXDATE values as one line of UTC instants (or of dates, VALUE=DATE), sorted, without repeats;
  a value in a named zone is converted (same instant). Floating values and unknown zones are left
  as they are, in their own line;
- lines in one order: RRULE, EXRULE, RDATE, EXDATE; identical lines once;
- a time zone that is UTC under another name (UTC, Etc/UTC, GMT, Z...) as None: a UTC time has
  no zone to keep, and Outlook and CalDAV read calsync's own UTC series back without one;
- an empty description or location as None.

Anything not understood (a malformed rule, a part with a value that is not a number where one is
expected) is left exactly as it was: re-spelling is never a reason to lose or guess meaning.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from calsync.model import canonical_instant

# icalendar's vRecur.canonical_order (the order RFC 5545 lists the parts in); unknown parts follow
RULE_ORDER = (
    "RSCALE",
    "FREQ",
    "UNTIL",
    "COUNT",
    "INTERVAL",
    "BYSECOND",
    "BYMINUTE",
    "BYHOUR",
    "BYDAY",
    "BYMONTHDAY",
    "BYYEARDAY",
    "BYWEEKNO",
    "BYMONTH",
    "BYSETPOS",
    "WKST",
    "SKIP",
)
_STANDARD = frozenset(RULE_ORDER) - {"RSCALE", "SKIP"}  # RFC 5545's own parts
LINE_ORDER = ("RRULE", "EXRULE", "RDATE", "EXDATE")
_NUMBER_LISTS = ("BYSECOND", "BYMINUTE", "BYHOUR", "BYMONTHDAY", "BYYEARDAY", "BYWEEKNO", "BYMONTH", "BYSETPOS")
_NUMBERS = ("COUNT", "INTERVAL")
_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_BYDAY = re.compile(r"^([+-]?)(\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)$")
# IANA names of a zone that is UTC all year, every year (tzdata links to Etc/UTC or Etc/GMT)
UTC_NAMES = frozenset(
    name.upper()
    for name in (
        "UTC",
        "Z",
        "Etc/UTC",
        "Etc/UCT",
        "UCT",
        "Etc/Universal",
        "Universal",
        "Etc/Zulu",
        "Zulu",
        "GMT",
        "Etc/GMT",
        "GMT0",
        "GMT+0",
        "GMT-0",
        "Etc/GMT0",
        "Etc/GMT+0",
        "Etc/GMT-0",
        "Greenwich",
        "Etc/Greenwich",
    )
)


class _Unsure(ValueError):
    """A rule not understood well enough to re-spell: it is kept as it was."""


# --- texts and zones -----------------------------------------------------------------------------


def canonical_text(value: str | None) -> str | None:
    """An empty description or location is no description or location."""
    return value or None


def is_utc_name(name: str | None) -> bool:
    if not name:
        return False
    return name.strip().upper() in UTC_NAMES


def canonical_zone(name: str | None) -> str | None:
    """A time zone that is UTC under any name reads as None (the instants are UTC already)."""
    if not name or is_utc_name(name):
        return None
    return name


# --- recurrence ----------------------------------------------------------------------------------


def canonical_recurrence(lines: Iterable[str] | None, first: date | datetime | None) -> list[str] | None:
    """Recurrence lines (RRULE / EXRULE / RDATE / EXDATE, as EventData holds them) in one spelling.

    `first` is the series' first start as its rule sees it: a date for an all-day series, else the
    naive wall time of DTSTART in the zone the rule is counted in. None when that is not known for
    sure (only what needs no DTSTART is folded then)."""
    if lines is None:
        return None
    rules: list[str] = []
    exdates: list[str] = []
    kept_exdates: list[str] = []
    others: list[str] = []
    for raw in lines:
        line = raw.strip()
        name = re.split(r"[;:]", line, maxsplit=1)[0].upper()
        if name == "RRULE":
            rules.append(canonical_rule(line, first))
        elif name == "EXDATE":
            values = _exdate_values(line)
            if values is None:
                kept_exdates.append(line)
            else:
                exdates.extend(values)
        else:
            others.append(line)
    out = list(dict.fromkeys(rules))
    for kind in LINE_ORDER[1:3]:
        out.extend(dict.fromkeys(ln for ln in others if re.split(r"[;:]", ln, maxsplit=1)[0].upper() == kind))
    out.extend(dict.fromkeys(ln for ln in others if re.split(r"[;:]", ln, maxsplit=1)[0].upper() not in LINE_ORDER))
    dates = sorted({v for v in exdates if len(v) == 10})
    instants = sorted({v for v in exdates if len(v) != 10})
    if dates:
        out.append("EXDATE;VALUE=DATE:" + ",".join(v.replace("-", "") for v in dates))
    if instants:
        out.append("EXDATE:" + ",".join(v.replace("-", "").replace(":", "") for v in instants))
    out.extend(dict.fromkeys(kept_exdates))
    return out or None


def canonical_rule(line: str, first: date | datetime | None) -> str:
    """One RRULE line in the canonical spelling (see the module docstring); unchanged if not understood."""
    return _canonical_rule(line, None if first is None else (first.weekday(), first.day, first.month))


@functools.lru_cache(maxsize=4096)  # a calendar repeats its rules; only the start's date shape counts
def _canonical_rule(line: str, first: tuple[int, int, int] | None) -> str:
    try:
        parts = _rule_parts(line)
    except _Unsure:
        return line.strip()
    if set(parts) <= _STANDARD:  # RSCALE, SKIP or an X- part may change what a default means
        _drop_defaults(parts, first)
    known = [p for p in RULE_ORDER if p in parts]
    unknown = sorted(p for p in parts if p not in RULE_ORDER)
    return "RRULE:" + ";".join(f"{p}={parts[p]}" for p in (*known, *unknown))


def _rule_parts(line: str) -> dict[str, str]:
    head, sep, text = line.strip().partition(":")
    if not sep or head.strip().upper() != "RRULE":  # parameters on the RRULE line: left alone
        raise _Unsure(line)
    parts: dict[str, str] = {}
    for chunk in text.strip().split(";"):
        if not chunk.strip():
            continue
        name, eq, value = chunk.partition("=")
        name, value = name.strip().upper(), value.strip().upper()
        if not eq or not name or not value or name in parts:
            raise _Unsure(line)
        if name in _NUMBERS:
            value = str(_number(value))
        elif name in _NUMBER_LISTS:
            value = ",".join(str(n) for n in sorted({_number(v) for v in value.split(",")}))
        elif name == "BYDAY":
            value = ",".join(_byday(value))
        elif name == "WKST" and value not in _DAYS:
            raise _Unsure(line)
        parts[name] = value
    if "FREQ" not in parts:
        raise _Unsure(line)
    return parts


def _number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _Unsure(text) from None


def _byday(value: str) -> list[str]:
    """BYDAY values: sign and leading zeros dropped, sorted by weekday then ordinal, once each."""
    seen: set[tuple[int, int]] = set()
    for chunk in value.split(","):
        match = _BYDAY.match(chunk.strip())
        if match is None:
            raise _Unsure(value)
        sign, digits, day = match.groups()
        ordinal = int(digits) * (-1 if sign == "-" else 1) if digits else 0
        if digits and ordinal == 0:
            raise _Unsure(value)
        seen.add((_DAYS.index(day), ordinal))
    return [f"{ordinal or ''}{_DAYS[day]}" for day, ordinal in sorted(seen)]


def _drop_defaults(parts: dict[str, str], first: tuple[int, int, int] | None) -> None:
    """`first`: (weekday, day of month, month) of DTSTART as the rule sees it, if known."""
    freq = parts["FREQ"]
    if parts.get("INTERVAL") == "1":
        del parts["INTERVAL"]
    if first is not None:
        weekday, day, month = _DAYS[first[0]], str(first[1]), str(first[2])
        by = {p for p in parts if p.startswith("BY")}
        if freq == "WEEKLY" and parts.get("BYDAY") == weekday and by <= {"BYDAY", "BYMONTH"}:
            del parts["BYDAY"]  # RFC 5545: a WEEKLY rule without BYDAY repeats on DTSTART's weekday
        elif freq == "MONTHLY" and parts.get("BYMONTHDAY") == day and by <= {"BYMONTHDAY", "BYMONTH"}:
            del parts["BYMONTHDAY"]  # ... a MONTHLY one without BYMONTHDAY (or BYDAY...) on DTSTART's day
        elif (
            freq == "YEARLY"
            and by
            and by <= {"BYMONTH", "BYMONTHDAY"}
            and parts.get("BYMONTH") == month
            and parts.get("BYMONTHDAY", day) == day
        ):
            del parts["BYMONTH"]  # ... a YEARLY one without BYMONTH (and BYMONTHDAY...) on DTSTART's date
            parts.pop("BYMONTHDAY", None)
    wkst = parts.get("WKST")
    if wkst is not None and (wkst == "MO" or not _week_start_matters(parts, first)):
        del parts["WKST"]


def _week_start_matters(parts: dict[str, str], first: tuple[int, int, int] | None) -> bool:
    """RFC 5545: WKST counts for a WEEKLY rule with INTERVAL > 1 and BYDAY, and with BYWEEKNO.
    Every n-th week of a single weekday, that of DTSTART, is the same whichever day weeks start on."""
    if "BYWEEKNO" in parts:
        return True
    if parts["FREQ"] != "WEEKLY" or "INTERVAL" not in parts:
        return False
    days = parts.get("BYDAY")
    if days is None:  # DTSTART's weekday only
        return False
    return first is None or days != _DAYS[first[0]]


@functools.lru_cache(maxsize=4096)
def _exdate_values(line: str) -> tuple[str, ...] | None:
    """The canonical boundaries (dates, or UTC instants) one EXDATE line excludes; None when a
    value is floating or in a zone not known here (it then keeps its own spelling)."""
    head, sep, values = line.partition(":")
    if not sep:
        return None
    params: dict[str, str] = {}
    for param in head.split(";")[1:]:
        key, eq, value = param.partition("=")
        if not eq:
            return None
        params[key.strip().upper()] = value.strip().strip('"')
    if set(params) - {"VALUE", "TZID"}:
        return None
    kind = params.get("VALUE", "").upper()
    zone: tzinfo | None = None
    if "TZID" in params:
        if is_utc_name(params["TZID"]):
            zone = UTC
        else:
            try:
                zone = ZoneInfo(params["TZID"])
            except (ZoneInfoNotFoundError, ValueError, OSError):
                return None
    out: list[str] = []
    for value in (v.strip().upper() for v in values.split(",")):
        try:
            if len(value) == 8 and kind in ("", "DATE"):
                out.append(datetime.strptime(value, "%Y%m%d").date().isoformat())  # noqa: DTZ007 (a date)
                continue
            if kind == "DATE":
                return None
            moment = datetime.strptime(value.removesuffix("Z"), "%Y%m%dT%H%M%S")  # noqa: DTZ007 (zone set below)
        except ValueError:
            return None
        if value.endswith("Z"):
            out.append(canonical_instant(moment.replace(tzinfo=UTC)))
        elif zone is not None:
            out.append(canonical_instant(moment.replace(tzinfo=zone)))
        else:
            return None  # floating: its meaning depends on the series' own zone
    return tuple(out)
