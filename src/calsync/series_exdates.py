"""EXDATE lines as sets of excluded starts, and a series' EXDATEs completed outside the window its
provider sees. Pure functions over recurrence lines; no I/O.

Why: Graph keeps no EXDATEs; calsync derives them from the occurrences a time window lists, so a
master read from Graph knows its deleted occurrences only inside that window. Taken as they read,
every EXDATE outside the window would look removed, and the occurrence it deleted would come back
on every other side. The engine instead keeps the EXDATEs it last agreed on outside the window."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, date, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from calsync.model import RemoteEvent, canonical_instant


def excluded_starts(recurrence: Iterable[str] | None, time_zone: str | None) -> set[str]:
    """The starts EXDATE lines exclude, as canonical boundaries: a date for VALUE=DATE, a UTC instant
    otherwise (a floating time is read in its TZID, else `time_zone`, else UTC). Unreadable values
    are skipped."""
    out: set[str] = set()
    for line in recurrence or ():
        head, _, values = line.partition(":")
        name, *params = head.split(";")
        if name.strip().upper() != "EXDATE":
            continue
        options = {k.strip().upper(): v.strip() for k, _, v in (p.partition("=") for p in params)}
        zone = _zone(options.get("TZID") or time_zone)
        for value in (v.strip() for v in values.split(",")):
            try:
                if len(value) == 8:
                    out.add(datetime.strptime(value, "%Y%m%d").date().isoformat())  # noqa: DTZ007 (a date)
                    continue
                moment = datetime.strptime(value.rstrip("Z"), "%Y%m%dT%H%M%S")  # noqa: DTZ007 (zone set below)
            except ValueError:
                continue
            out.add(canonical_instant(moment.replace(tzinfo=UTC if value.endswith("Z") else zone)))
    return out


def exdate_line(starts: Iterable[str]) -> str:
    """One EXDATE line for canonical boundaries (dates as VALUE=DATE, instants in UTC), in time order."""
    ordered = sorted(starts)
    if ordered and len(ordered[0]) == 10:
        return "EXDATE;VALUE=DATE:" + ",".join(s.replace("-", "") for s in ordered)
    return "EXDATE:" + ",".join(s.replace("-", "").replace(":", "") for s in ordered)


def _zone(name: str | None) -> tzinfo:
    try:
        return ZoneInfo(name) if name else UTC
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _inside(start: str, window: tuple[datetime, datetime]) -> bool:
    if len(start) == 10:
        moment = datetime.combine(date.fromisoformat(start), datetime.min.time(), UTC)
    else:
        moment = datetime.fromisoformat(start)
    return window[0] <= moment < window[1]


def completed_outside_window(remote: RemoteEvent, base: dict[str, Any] | None) -> RemoteEvent:
    """`remote` with the EXDATEs `base` (the last agreed content) holds outside the window the remote's
    EXDATEs are known in. Unchanged when it knows them all, is no series, or nothing is missing.
    When the completed set equals the base's, the base's own lines are used, so an unchanged series
    reads exactly as agreed (same content hash)."""
    window = remote.exdates_known
    data = remote.data
    if window is None or not data.recurrence or not base or not base.get("recurrence"):
        return remote
    agreed = excluded_starts(base["recurrence"], base.get("time_zone"))
    outside = {start for start in agreed if not _inside(start, window)}
    seen = excluded_starts(data.recurrence, data.time_zone)
    if outside <= seen:
        return remote
    merged = seen | outside
    rules = [line for line in data.recurrence if not line.upper().startswith("EXDATE")]
    if merged == agreed:
        lines = rules + [line for line in base["recurrence"] if line.upper().startswith("EXDATE")]
    else:
        lines = [*rules, exdate_line(merged)]
    return replace(remote, data=replace(data, recurrence=lines))


def without_starts(recurrence: list[str], time_zone: str | None, starts: set[str]) -> list[str]:
    """`recurrence` with `starts` (canonical boundaries) no longer excluded: the EXDATE lines are
    rewritten as one line of what is left (none when nothing is), the rules kept as they are."""
    left = excluded_starts(recurrence, time_zone) - starts
    rules = [line for line in recurrence if not line.upper().startswith("EXDATE")]
    return [*rules, exdate_line(left)] if left else rules


def as_occurrence(remote: RemoteEvent, occurrence: Any) -> RemoteEvent:
    """A single event that stands in for an occurrence on a side that could not write it into its
    series (Outlook cannot restore a deleted occurrence: calsync writes it as a single event there),
    read as that occurrence: its original start and UID are the occurrence's (`occurrence`, the local
    EventData), so reading it back is no change, and an edit of it there is an edit of the occurrence."""
    return replace(
        remote, data=replace(remote.data, original_start=occurrence.original_start, ical_uid=occurrence.ical_uid)
    )
