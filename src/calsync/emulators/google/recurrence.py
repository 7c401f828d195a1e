"""Recurring series as Google stores them (RRULE/EXRULE/RDATE/EXDATE lines), expanded with dateutil.

Expansion is bounded (about two years ahead, at most 1000 instances), as
Google's own is; see ``../shared/reference/provider-semantics.md`` 1.4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rruleset, rrulestr

from calsync.emulators.google.times import _fmt_dt, _midnight_ts

EXPANSION_HORIZON_S = 730 * 86400  # expand open-ended series about two years ahead
EXPANSION_MAX_INSTANCES = 1000
EXPANSION_MAX_SCAN = 50_000
SPAN_SCAN_LIMIT = 5000


@dataclass(frozen=True, slots=True)
class _Occ:
    """One occurrence of a series: original start (the instance key) and its times."""

    key: float
    end_ts: float
    start_json: dict[str, Any]
    end_json: dict[str, Any]
    suffix: str


def _until_for(value: str, all_day: bool, zone: ZoneInfo | None) -> str:
    """Rewrite UNTIL so its form matches DTSTART (dateutil requires UTC for aware, naive for dates)."""
    parts = value.split(";")
    for i, part in enumerate(parts):
        name, _, raw = part.partition("=")
        if name.upper() != "UNTIL":
            continue
        raw = raw.strip().upper()
        if all_day:
            parts[i] = "UNTIL=" + raw[:8]
        elif not raw.endswith("Z"):
            if len(raw) == 8:
                local = datetime.strptime(raw, "%Y%m%d").replace(hour=23, minute=59, second=59, tzinfo=zone)
            else:
                local = datetime.strptime(raw, "%Y%m%dT%H%M%S").replace(tzinfo=zone)
            parts[i] = "UNTIL=" + local.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return ";".join(parts)


def _ical_datetime(value: str, params: list[str], dtstart: datetime, zone: ZoneInfo | None) -> datetime:
    """An RDATE/EXDATE value in the same form as DTSTART so rruleset can compare them."""
    value = value.strip().upper()
    tzid = next((p.split("=", 1)[1] for p in params if p.upper().startswith("TZID=")), None)
    if len(value) == 8:
        # a DATE value: naive, as an all-day DTSTART is; for a timed series only its year, month and day are used
        d = datetime.strptime(value, "%Y%m%d")  # noqa: DTZ007 (a date, not an instant: see above)
        if zone is None:
            return d
        return dtstart.replace(year=d.year, month=d.month, day=d.day)
    if value.endswith("Z"):
        dt = datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    else:
        local_zone = ZoneInfo(tzid) if tzid else (zone or UTC)
        dt = datetime.strptime(value, "%Y%m%dT%H%M%S").replace(tzinfo=local_zone)
    if zone is None:
        return datetime(dt.year, dt.month, dt.day)  # noqa: DTZ001 (all-day series: naive like its DTSTART)
    return dt.astimezone(zone)


def _compile_rules(lines: list[str], dtstart: datetime, zone: ZoneInfo | None, all_day: bool) -> tuple[rruleset, bool]:
    """Build an rruleset from RRULE/EXRULE/RDATE/EXDATE lines; returns it and whether it is bounded."""
    rs = rruleset()
    bounded = True
    for line in lines:
        head, sep, value = line.partition(":")
        if not sep:
            raise ValueError(line)
        name, *params = head.split(";")
        name = name.strip().upper()
        if name in ("RRULE", "EXRULE"):
            rule = rrulestr(_until_for(value, all_day, zone), dtstart=dtstart)
            if not isinstance(rule, rrule):
                raise ValueError(line)
            if name == "RRULE":
                bounded = bounded and ("COUNT=" in value.upper() or "UNTIL=" in value.upper())
                rs.rrule(rule)
            else:
                rs.exrule(rule)
        elif name in ("RDATE", "EXDATE"):
            add = rs.rdate if name == "RDATE" else rs.exdate
            for item in value.split(","):
                add(_ical_datetime(item, params, dtstart, zone))
        else:
            raise ValueError(line)
    return rs, bounded


class _Series:
    """A compiled recurring event: expands occurrences with dateutil, bounded."""

    def __init__(self, data: dict[str, Any], cal_zone: ZoneInfo) -> None:
        start, end = data["start"], data["end"]
        self.cal_zone = cal_zone
        self.all_day = "date" in start
        if self.all_day:
            d0, d1 = date.fromisoformat(start["date"]), date.fromisoformat(end["date"])
            self.zone: ZoneInfo | None = None
            # all-day: a naive DTSTART, so dateutil expands floating dates (UNTIL stays a date, see _until_for)
            self.dtstart = datetime(d0.year, d0.month, d0.day)  # noqa: DTZ001 (a date, floating by design)
            self.days = (d1 - d0).days
            self.duration = timedelta(0)
            self.end_zone_name = ""
        else:
            self.zone = ZoneInfo(start["timeZone"])
            self.dtstart = datetime.fromisoformat(start["dateTime"]).astimezone(self.zone)
            self.duration = datetime.fromisoformat(end["dateTime"]) - self.dtstart
            self.end_zone_name = end.get("timeZone") or start["timeZone"]
            self.days = 0
        self.rset, self.bounded = _compile_rules(list(data["recurrence"]), self.dtstart, self.zone, self.all_day)
        self._cache: dict[tuple[Any, ...], list[_Occ]] = {}

    def occ(self, dt: datetime) -> _Occ:
        """The occurrence starting at ``dt`` (a rule value)."""
        if self.all_day:
            d0 = dt.date()
            d1 = d0 + timedelta(days=self.days)
            return _Occ(
                _midnight_ts(d0, self.cal_zone),
                _midnight_ts(d1, self.cal_zone),
                {"date": d0.isoformat()},
                {"date": d1.isoformat()},
                d0.strftime("%Y%m%d"),
            )
        assert self.zone is not None
        end = (dt.astimezone(UTC) + self.duration).astimezone(ZoneInfo(self.end_zone_name))
        return _Occ(
            dt.timestamp(),
            end.timestamp(),
            {"dateTime": _fmt_dt(dt), "timeZone": self.zone.key},
            {"dateTime": _fmt_dt(end), "timeZone": self.end_zone_name},
            dt.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ"),
        )

    def occurrences(self, time_min: float | None, time_max: float | None, now: float) -> list[_Occ]:
        """Occurrences overlapping (time_min, time_max), up to timeMax or about two years ahead."""
        horizon = time_max if time_max is not None else max(self.dtstart_ts, now) + EXPANSION_HORIZON_S
        cache_key = (time_min, time_max, int(horizon // 3600) if time_max is None else None)
        hit = self._cache.get(cache_key)
        if hit is not None:
            return hit
        out: list[_Occ] = []
        for n, dt in enumerate(self.rset):
            if n >= EXPANSION_MAX_SCAN:
                break
            occ = self.occ(dt)
            if occ.key >= horizon:
                break
            if time_min is not None and occ.end_ts <= time_min:
                continue
            out.append(occ)
            if len(out) >= EXPANSION_MAX_INSTANCES:
                break
        if len(self._cache) > 8:
            self._cache.clear()
        self._cache[cache_key] = out
        return out

    @property
    def dtstart_ts(self) -> float:
        return _midnight_ts(self.dtstart.date(), self.cal_zone) if self.all_day else self.dtstart.timestamp()

    def span_end(self) -> float:
        """End of the last occurrence, or infinity for an open-ended series."""
        if not self.bounded:
            return math.inf
        last: datetime | None = None
        for n, dt in enumerate(self.rset):
            if n >= SPAN_SCAN_LIMIT:
                return math.inf
            last = dt
        return self.occ(last).end_ts if last is not None else self.dtstart_ts

    def find(self, suffix: str) -> _Occ | None:
        """The occurrence an instance id suffix names, if the rule produces it."""
        try:
            if self.all_day:
                if len(suffix) != 8:
                    return None
                dt = datetime.strptime(suffix, "%Y%m%d")  # noqa: DTZ007 (all-day suffix: a date, naive like DTSTART)
            else:
                if len(suffix) != 16:
                    return None
                assert self.zone is not None
                dt = datetime.strptime(suffix, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).astimezone(self.zone)
        except ValueError:
            return None
        found = self.rset.after(dt, inc=True)
        return self.occ(found) if found is not None and found == dt else None
