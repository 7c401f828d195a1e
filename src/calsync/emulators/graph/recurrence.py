"""Recurring series as Graph stores them (patternedRecurrence), validated and expanded with dateutil.

Shapes: https://learn.microsoft.com/graph/api/resources/patternedrecurrence; a calendar view
shows the occurrences whose span overlaps its window (``../shared/reference/provider-semantics.md`` 2.2).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from dateutil.rrule import DAILY, MONTHLY, WEEKLY, YEARLY, rrule, weekday

from calsync.emulators.common import is_int
from calsync.emulators.graph.errors import GraphError
from calsync.emulators.graph.times import _When, _zone

MAX_INSTANCES = 5000  # occurrences expanded per series per request
_Frequency = Literal[0, 1, 2, 3, 4, 5, 6]  # dateutil's YEARLY .. SECONDLY

_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_INDEX = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
_PATTERNS: dict[str, _Frequency] = {
    "daily": DAILY,
    "weekly": WEEKLY,
    "absoluteMonthly": MONTHLY,
    "relativeMonthly": MONTHLY,
    "absoluteYearly": YEARLY,
    "relativeYearly": YEARLY,
}
_RANGES = ("endDate", "noEnd", "numbered")


def _bad_recurrence(message: str) -> GraphError:
    return GraphError(400, "ErrorCalendarInvalidRecurrence", message)


def _rec_date(value: Any, what: str) -> date:
    try:
        if isinstance(value, str) and len(value) == 10:
            return date.fromisoformat(value)
    except ValueError:
        pass
    raise _bad_recurrence(f"The recurrence {what} '{value}' is not a valid date.")


def _rec_int(pattern: dict[str, Any], key: str, low: int, high: int, default: int) -> int:
    value = pattern.get(key, default)
    if value is None:
        value = default
    if not is_int(value, 0, high) or (value != default and value < low):
        raise _bad_recurrence(f"The recurrence pattern {key} '{value}' is out of range.")
    return value


def _check_pattern(pattern: Any) -> dict[str, Any]:
    if not isinstance(pattern, dict) or pattern.get("type") not in _PATTERNS:
        raise _bad_recurrence("The recurrence pattern type is missing or not supported.")
    kind = pattern["type"]
    days = pattern.get("daysOfWeek") or []
    if not isinstance(days, list) or any(not isinstance(d, str) or d.lower() not in _DAYS for d in days):
        raise _bad_recurrence("The recurrence pattern daysOfWeek is not valid.")
    first_day = str(pattern.get("firstDayOfWeek") or "sunday").lower()
    index = str(pattern.get("index") or "first").lower()
    if first_day not in _DAYS or index not in _INDEX:
        raise _bad_recurrence("The recurrence pattern firstDayOfWeek or index is not valid.")
    out = {
        "type": kind,
        "interval": _rec_int(pattern, "interval", 1, 999, 1),
        "month": _rec_int(pattern, "month", 1, 12, 0),
        "dayOfMonth": _rec_int(pattern, "dayOfMonth", 1, 31, 0),
        "daysOfWeek": [d.lower() for d in days],
        "firstDayOfWeek": first_day,
        "index": index,
    }
    if out["interval"] < 1:
        raise _bad_recurrence("The recurrence pattern interval must be at least 1.")
    if kind in ("weekly", "relativeMonthly", "relativeYearly") and not out["daysOfWeek"]:
        raise _bad_recurrence(f"A {kind} recurrence pattern needs daysOfWeek.")
    if kind in ("absoluteMonthly", "absoluteYearly") and not out["dayOfMonth"]:
        raise _bad_recurrence(f"An {kind} recurrence pattern needs dayOfMonth.")
    if kind in ("absoluteYearly", "relativeYearly") and not out["month"]:
        raise _bad_recurrence(f"A {kind} recurrence pattern needs month.")
    return out


def _check_range(rng: Any) -> dict[str, Any]:
    if not isinstance(rng, dict) or rng.get("type") not in _RANGES:
        raise _bad_recurrence("The recurrence range type is missing or not supported.")
    start = _rec_date(rng.get("startDate"), "startDate")
    out: dict[str, Any] = {
        "type": rng["type"],
        "startDate": start.isoformat(),
        "endDate": "0001-01-01",
        "recurrenceTimeZone": rng.get("recurrenceTimeZone") or None,
        "numberOfOccurrences": 0,
    }
    if rng.get("recurrenceTimeZone"):
        _zone(rng["recurrenceTimeZone"])
    if rng["type"] == "endDate":
        end = _rec_date(rng.get("endDate"), "endDate")
        if end < start:
            raise _bad_recurrence("The recurrence range endDate is before its startDate.")
        out["endDate"] = end.isoformat()
    if rng["type"] == "numbered":
        count = rng.get("numberOfOccurrences")
        if not is_int(count, 1, 999):
            raise _bad_recurrence("The recurrence range numberOfOccurrences must be between 1 and 999.")
        out["numberOfOccurrences"] = count
    return out


def _check_recurrence(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad_recurrence("The recurrence must be a patternedRecurrence object.")
    return {"pattern": _check_pattern(value.get("pattern")), "range": _check_range(value.get("range"))}


class _Series:
    """A compiled series: occurrence starts from the pattern, in the master's start zone."""

    def __init__(self, recurrence: dict[str, Any], start: _When, end: _When) -> None:
        self.zone = start.zone
        self.duration = end.instant - start.instant
        pattern, rng = recurrence["pattern"], recurrence["range"]
        dtstart = datetime.combine(date.fromisoformat(rng["startDate"]), start.local.time())
        kwargs: dict[str, Any] = {
            "dtstart": dtstart,
            "interval": pattern["interval"],
            "wkst": _DAYS.index(pattern["firstDayOfWeek"]),
        }
        kind = pattern["type"]
        days = [weekday(_DAYS.index(d)) for d in pattern["daysOfWeek"]]
        if kind == "weekly" or kind.startswith("relative"):
            kwargs["byweekday"] = days
        if kind.startswith("relative"):
            kwargs["bysetpos"] = _INDEX[pattern["index"]]
        if kind.startswith("absolute"):
            kwargs["bymonthday"] = pattern["dayOfMonth"]
        if kind.endswith("Yearly"):
            kwargs["bymonth"] = pattern["month"]
        if rng["type"] == "numbered":
            kwargs["count"] = rng["numberOfOccurrences"]
        elif rng["type"] == "endDate":
            kwargs["until"] = datetime.combine(date.fromisoformat(rng["endDate"]), datetime.max.time())
        self.rule = rrule(_PATTERNS[kind], **kwargs)
        self.first_local = dtstart

    def _instant(self, local: datetime) -> datetime:
        return local.replace(tzinfo=self.zone).astimezone(UTC)

    def starts(self, lo: datetime, hi: datetime, limit: int = MAX_INSTANCES) -> list[datetime]:
        """Occurrence starts (UTC) whose span overlaps [lo, hi)."""
        lo_local = (lo - self.duration - timedelta(days=1)).astimezone(self.zone).replace(tzinfo=None)
        hi_local = (hi + timedelta(days=1)).astimezone(self.zone).replace(tzinfo=None)
        out: list[datetime] = []
        for local in self.rule.xafter(max(lo_local, self.first_local), inc=True):
            if local > hi_local or len(out) >= limit:
                break
            start = self._instant(local)
            if _overlaps(start, start + self.duration, lo, hi):
                out.append(start)
        return out

    def contains(self, start: datetime) -> bool:
        local = start.astimezone(self.zone).replace(tzinfo=None)
        return local in self.rule.between(local - timedelta(seconds=1), local + timedelta(seconds=1), inc=True)


def _overlaps(start: datetime, end: datetime, lo: datetime, hi: datetime) -> bool:
    """calendarView membership: the span overlaps the window (a zero-length event counts at its start)."""
    if start == end:
        return lo <= start < hi
    return start < hi and end > lo
