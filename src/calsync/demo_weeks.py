"""The demo's sample calendars, shaped like real people's weeks (standard library only).

One planner keeps the busy time of every calendar shown together on the demo's page, so the weeks read like
one person's and one colleague's: mornings start with a short stand-up, most working days hold two to four
meetings of 30 to 90 minutes with gaps between them, lunch is mostly free, evenings and weekends are nearly
empty, a few weekly series repeat, a handful of all-day items (a holiday, a conference, an offsite) sit on top,
and about one clash a week happens on purpose (double bookings are part of a real week). Everything is drawn
from a seeded random generator, so a demo looks the same each time it starts on the same day.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

ZONE = "Europe/Berlin"  # the zone the sample people live in
ABROAD = "America/New_York"  # the zone of a few calls with the New York office (shown in their own zone)
DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
GRAPH_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True)
class SampleEvent:
    """One sample event: timed (`start`/`end` wall clock in `zone`) or all-day (`day`, `days` long), optionally
    a weekly series of `count` occurrences on `weekdays` (or the start's weekday), every `interval` weeks."""

    title: str
    start: datetime | None = None  # naive wall clock in `zone`
    minutes: int = 60
    day: date | None = None  # all-day events
    days: int = 1
    location: str | None = None
    description: str | None = None
    zone: str = ZONE
    count: int = 0  # > 0: a weekly series
    interval: int = 1
    weekdays: tuple[int, ...] = ()

    @property
    def all_day(self) -> bool:
        return self.day is not None

    def rrule(self) -> str:
        assert self.start is not None
        days = ",".join(DAYS[d] for d in (self.weekdays or (self.start.weekday(),)))
        every = f";INTERVAL={self.interval}" if self.interval > 1 else ""
        return f"RRULE:FREQ=WEEKLY{every};BYDAY={days};COUNT={self.count}"

    def google(self) -> dict[str, Any]:
        """The event as Google Calendar's events.insert takes it."""
        body: dict[str, Any] = {"summary": self.title}
        if self.location:
            body["location"] = self.location
        if self.description:
            body["description"] = self.description
        if self.day is not None:
            body["start"] = {"date": self.day.isoformat()}
            body["end"] = {"date": (self.day + timedelta(days=self.days)).isoformat()}
            return body
        assert self.start is not None
        zone = ZoneInfo(self.zone)
        begin = self.start.replace(tzinfo=zone)
        finish = begin + timedelta(minutes=self.minutes)
        body["start"] = {"dateTime": begin.isoformat(), "timeZone": self.zone}
        body["end"] = {"dateTime": finish.isoformat(), "timeZone": self.zone}
        if self.count:
            body["recurrence"] = [self.rrule()]
        return body

    def graph(self) -> dict[str, Any]:
        """The event as Microsoft Graph's POST /me/calendars/{id}/events takes it."""
        body: dict[str, Any] = {"subject": self.title}
        if self.location:
            body["location"] = {"displayName": self.location}
        if self.description:
            body["body"] = {"contentType": "text", "content": self.description}
        if self.day is not None:
            end = self.day + timedelta(days=self.days)
            body["isAllDay"] = True
            body["start"] = {"dateTime": f"{self.day.isoformat()}T00:00:00", "timeZone": self.zone}
            body["end"] = {"dateTime": f"{end.isoformat()}T00:00:00", "timeZone": self.zone}
            return body
        assert self.start is not None
        finish = self.start + timedelta(minutes=self.minutes)
        body["start"] = {"dateTime": self.start.isoformat(), "timeZone": self.zone}
        body["end"] = {"dateTime": finish.isoformat(), "timeZone": self.zone}
        if self.count:
            body["recurrence"] = {
                "pattern": {
                    "type": "weekly",
                    "interval": self.interval,
                    "daysOfWeek": [GRAPH_DAYS[d] for d in (self.weekdays or (self.start.weekday(),))],
                },
                "range": {
                    "type": "numbered",
                    "startDate": self.start.date().isoformat(),
                    "numberOfOccurrences": self.count,
                },
            }
        return body


class Planner:
    """Busy time per day (minutes after midnight, Berlin wall clock) over every sample calendar."""

    def __init__(self, first: date, days: int, seed: int = 22) -> None:
        self.first = first
        self.days = days
        self.rng = random.Random(seed)
        self.busy: dict[date, list[tuple[int, int]]] = {}

    def workdays(self, skip: int = 0) -> list[date]:
        return [d for d in (self.first + timedelta(days=n) for n in range(skip, self.days)) if d.weekday() < 5]

    def mondays(self) -> list[date]:
        return [d for d in (self.first + timedelta(days=n) for n in range(self.days)) if d.weekday() == 0]

    def free(self, day: date, start: int, minutes: int) -> bool:
        return all(start >= b_end or start + minutes <= b_start for b_start, b_end in self.busy.get(day, []))

    def take(self, day: date, start: int, minutes: int) -> None:
        self.busy.setdefault(day, []).append((start, start + minutes))

    def booked(self, day: date) -> int:
        return sum(end - start for start, end in self.busy.get(day, []))

    def place(self, day: date, minutes: int, window: tuple[int, int], *, clash: bool = False) -> datetime | None:
        """A start in `window` (minutes after midnight, on the half hour) that is free with a quarter of an hour
        to spare either side, or, with `clash`, one that overlaps something already there."""
        low, high = window
        starts = list(range(low, high - minutes + 1, 30))
        self.rng.shuffle(starts)
        for start in starts:
            fits = self.free(day, start - 15, minutes + 30)
            if fits != clash:
                self.take(day, start, minutes)
                return datetime.combine(day, time(start // 60, start % 60))
        return None

    def series(
        self, first: date, at: int, minutes: int, weeks: int, weekdays: tuple[int, ...] = (), interval: int = 1
    ) -> datetime:
        """Reserve the occurrences of a weekly series starting on `first` at `at`."""
        for week in range(0, weeks * interval, interval):
            for wd in weekdays or (first.weekday(),):
                day = first + timedelta(days=7 * week + wd - first.weekday())
                self.take(day, at, minutes)
        return datetime.combine(first, time(at // 60, at % 60))


def _h(hours: float) -> int:
    return int(hours * 60)


WORK = (  # (title, minutes, location)
    ("Design review: onboarding flow", 60, "Blue room"),
    ("Interview: backend engineer", 60, "Room 204"),
    ("Customer call: Northwind", 45, "Online"),
    ("Roadmap workshop", 90, "Main hall"),
    ("Pairing with Chen", 90, None),
    ("Budget check-in", 30, "Online"),
    ("Incident review", 45, "Room 101"),
    ("Hiring sync", 30, "Online"),
    ("Release go/no-go", 30, "Room 101"),
    ("Security training", 60, "Main hall"),
    ("Pricing page copy review", 45, "Blue room"),
    ("Quarterly review prep", 60, None),
    ("Support rotation hand-over", 30, "Online"),
    ("Data platform deep dive", 90, "Room 204"),
    ("Mobile app demo", 45, "Blue room"),
)
LUNCH = (("Lunch with Priya", "Cafe Lotte"), ("Lunch with the design team", "Cafeteria"), ("Lunch with Omar", None))
BOB = (
    ("Code review session", 60, None),
    ("Vendor call: printers", 30, "Online"),
    ("Team lunch", 60, "Cafeteria"),
    ("Dentist", 60, "Dr. Ruiz, Lindenstrasse 12"),
    ("Planning poker", 45, "Room 101"),
    ("Support escalations", 30, "Online"),
    ("Coffee with Alice", 30, "Kitchen"),
)
OUTLOOK = (
    ("Contoso steering committee", 60, "Contoso HQ, floor 3"),
    ("Contract review with Contoso legal", 45, "Online"),
    ("Partner pipeline sync", 30, "Online"),
    ("Invoice questions", 30, None),
    ("Contoso product briefing", 60, "Online"),
)
MIRRORED = (
    ("Board prep", 60, None),
    ("Hand-over: customer accounts", 45, "Online"),
    ("Shared travel planning", 30, None),
    ("Joint partner review", 60, "Contoso HQ"),
    ("Office move check-in", 30, "Room 101"),
)


def _desc(text: str) -> str:
    return f"{text} (sample event of the calsync demo)"


def alice_work(p: Planner) -> list[SampleEvent]:
    """Alice's main work calendar: stand-up, a few series, two or three meetings a day, lunches, calls abroad."""
    monday = p.mondays()[0]
    weeks = len(p.mondays())
    out = [
        SampleEvent(
            "Team stand-up",
            p.series(monday, _h(9.5), 15, weeks, (0, 1, 2, 3, 4)),
            15,
            location="Online",
            count=weeks * 5,
            weekdays=(0, 1, 2, 3, 4),
            description=_desc("Daily"),
        ),
        SampleEvent(
            "1:1 with Ben",
            p.series(monday + timedelta(days=1), _h(14), 30, weeks),
            30,
            location="Ben's desk",
            count=weeks,
            description=_desc("Weekly one-to-one"),
        ),
        SampleEvent(
            "Sprint planning",
            p.series(monday, _h(10), 90, (weeks + 1) // 2, interval=2),
            90,
            location="Main hall",
            count=(weeks + 1) // 2,
            interval=2,
            description=_desc("Every other week"),
        ),
        SampleEvent(
            "Friday demo",
            p.series(monday + timedelta(days=4), _h(16), 60, weeks),
            60,
            location="Main hall",
            count=weeks,
            description=_desc("What we shipped this week"),
        ),
    ]
    for day in p.workdays():
        for _ in range(p.rng.choice((1, 2, 2, 3))):
            title, minutes, location = p.rng.choice(WORK)
            start = p.place(day, minutes, (_h(9), _h(17.5)))
            if start:
                out.append(SampleEvent(title, start, minutes, location=location, description=_desc(title)))
        if p.rng.random() < 0.4:
            title, location = p.rng.choice(LUNCH)
            start = p.place(day, 60, (_h(12), _h(13.5)))
            if start:
                out.append(SampleEvent(title, start, 60, location=location))
        if day.weekday() in (1, 3) and p.rng.random() < 0.5:
            # 10:00 or 11:00 in New York is 16:00 or 17:00 in Berlin: kept in the New York zone
            at = p.place(day, 30, (_h(16), _h(17.5)))
            if at:
                there = at.replace(tzinfo=ZoneInfo(ZONE)).astimezone(ZoneInfo(ABROAD)).replace(tzinfo=None)
                out.append(
                    SampleEvent(
                        "Call with the New York office",
                        there,
                        30,
                        zone=ABROAD,
                        location="Online",
                        description=_desc("Scheduled from New York, in New York time"),
                    )
                )
    # about one clash a week: a meeting booked over another one, as happens
    for monday in p.mondays():
        day = monday + timedelta(days=p.rng.randrange(5))
        start = p.place(day, 45, (_h(10), _h(16)), clash=True)
        if start:
            out.append(
                SampleEvent(
                    "Vendor demo (double-booked)",
                    start,
                    45,
                    location="Online",
                    description=_desc("Booked over another meeting"),
                )
            )
    first = p.first
    out += [
        SampleEvent(
            "Berlin product conference",
            day=first + timedelta(days=_next(first, 2) + 14),
            days=2,
            location="Messe Berlin",
            description=_desc("Two days"),
        ),
        SampleEvent("Quarter close", day=first + timedelta(days=_next(first, 4) + 7)),
        SampleEvent(
            "Alice on holiday",
            day=first + timedelta(days=_next(first, 0) + 28),
            days=5,
            description=_desc("Out of office"),
        ),
    ]
    return out


def offsites(p: Planner) -> list[SampleEvent]:
    """The team's offsites: a two-day offsite every few weeks and a planning call before each."""
    out: list[SampleEvent] = []
    for n, (place, weeks) in enumerate((("Lake Werbellin", 1), ("Leipzig office", 3), ("Lisbon", 5))):
        day = p.first + timedelta(days=_next(p.first, 3) + 7 * weeks - 7)
        out.append(
            SampleEvent(
                f"Team offsite: {place}",
                day=day,
                days=2,
                location=place,
                description=_desc("Travel the evening before"),
            )
        )
        before = day - timedelta(days=2 + n % 2)
        start = p.place(before, 45, (_h(11), _h(16)))
        if start:
            out.append(SampleEvent(f"Offsite planning: {place}", start, 45, location="Online"))
    return out


def bob_week(p: Planner) -> list[SampleEvent]:
    """Bob's calendar: fewer meetings, an early swim, a gym evening, a few days off."""
    monday = p.mondays()[0]
    weeks = len(p.mondays())
    out = [
        SampleEvent(
            "Swimming", p.series(monday + timedelta(days=3), _h(7), 60, weeks), 60, location="Stadtbad", count=weeks
        ),
    ]
    for day in p.workdays():
        for _ in range(p.rng.choice((0, 1, 1, 2))):
            title, minutes, location = p.rng.choice(BOB)
            start = p.place(day, minutes, (_h(9), _h(17)))
            if start:
                out.append(SampleEvent(title, start, minutes, location=location))
        if day.weekday() in (0, 2) and p.rng.random() < 0.6:
            start = p.place(day, 90, (_h(18), _h(20)))
            if start:
                out.append(SampleEvent("Gym", start, 90, location="Urban gym"))
    out.append(SampleEvent("Bob off: family visit", day=p.first + timedelta(days=_next(p.first, 2) + 21), days=3))
    return out


def outlook_week(p: Planner) -> list[SampleEvent]:
    """Alice's Outlook mailbox at the partner company: a weekly call and a meeting most days."""
    monday = p.mondays()[0]
    weeks = len(p.mondays())
    out = [
        SampleEvent(
            "Contoso weekly",
            p.series(monday + timedelta(days=2), _h(11), 60, weeks),
            60,
            location="Online",
            count=weeks,
        ),
    ]
    for day in p.workdays():
        if p.rng.random() < 0.6:
            title, minutes, location = p.rng.choice(OUTLOOK)
            start = p.place(day, minutes, (_h(9), _h(17)))
            if start:
                out.append(SampleEvent(title, start, minutes, location=location))
    out.append(SampleEvent("Contoso all-hands", day=p.first + timedelta(days=_next(p.first, 3) + 14)))
    return out


def mirrored(p: Planner, count: int) -> list[SampleEvent]:
    """The Google side of the calendar shared with Outlook: a few meetings from the second week on."""
    out: list[SampleEvent] = []
    days = p.workdays(skip=7)
    for n in range(count):
        title, minutes, location = MIRRORED[n % len(MIRRORED)]
        day = days[(n * 7 + 3) % len(days)]
        start = p.place(day, minutes, (_h(9), _h(17)))
        if start:
            out.append(SampleEvent(title, start, minutes, location=location))
    return out


def _next(first: date, weekday: int) -> int:
    """Days from `first` to the next `weekday` (0 = Monday), counting `first` itself."""
    return (weekday - first.weekday()) % 7


def first_day(start: datetime) -> date:
    """The planner's first day: the demo's start as a Berlin date."""
    return start.astimezone(ZoneInfo(ZONE)).date() if start.tzinfo else start.replace(tzinfo=UTC).date()
