"""Realistic calendar objects for the CalDAV benchmark, and seeding them straight into a server's storage.

Seeding through HTTP would take minutes at 10,000 events (each PUT parses and indexes); writing the
servers' own on-disk layout takes seconds:
- Radicale: `<folder>/collection-root/<user>/<calendar>/` holding `.Radicale.props` (JSON) and one
  `<name>.ics` per item. Its cache (`.Radicale.cache`) is built on first read, so the bench warms the
  server up before timing anything.
- Xandikos: each collection is a git repository with a work tree; the `.xandikos` file says it is a
  calendar. The bench lets Xandikos create its default calendar, stops it, writes the files and makes
  one commit (Xandikos reads the committed tree: etags are blob ids, sync tokens tree ids).

Content is deterministic (seeded random): VTIMEZONE + TZID, all-day events, weekly series with
RECURRENCE-ID overrides and EXDATEs in the same object, organizer and attendees, VALARMs, long folded
descriptions, X- properties. About one object in ten is a series with overrides, so 10,000 objects
hold more than 10,000 VEVENTs (what a stock Radicale refuses to put in one REPORT answer).
"""
from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

TIMEZONES = {
    "Europe/Berlin": """BEGIN:VTIMEZONE
TZID:Europe/Berlin
BEGIN:DAYLIGHT
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
TZNAME:CEST
DTSTART:19700329T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
END:DAYLIGHT
BEGIN:STANDARD
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
TZNAME:CET
DTSTART:19701025T030000
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
END:STANDARD
END:VTIMEZONE""",
    "America/New_York": """BEGIN:VTIMEZONE
TZID:America/New_York
BEGIN:DAYLIGHT
TZOFFSETFROM:-0500
TZOFFSETTO:-0400
TZNAME:EDT
DTSTART:19700308T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU
END:DAYLIGHT
BEGIN:STANDARD
TZOFFSETFROM:-0400
TZOFFSETTO:-0500
TZNAME:EST
DTSTART:19701101T020000
RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU
END:STANDARD
END:VTIMEZONE""",
    "Asia/Tokyo": """BEGIN:VTIMEZONE
TZID:Asia/Tokyo
BEGIN:STANDARD
TZOFFSETFROM:+0900
TZOFFSETTO:+0900
TZNAME:JST
DTSTART:19700101T000000
END:STANDARD
END:VTIMEZONE""",
}
WORDS = ["quarterly", "review", "planning", "sync", "design", "budget", "roadmap", "customer", "onboarding", "retro", "standup", "hiring", "interview", "launch", "migration", "incident", "postmortem", "workshop", "training", "offsite", "demo", "architecture", "security", "audit", "release", "marketing", "partner", "lunch", "dentist", "yoga", "flight"]
PEOPLE = ["Alice Martin", "Bob Okafor", "Chloé Dubois", "Dmitri Ivanov", "Eva Müller", "Farid Haddad",
          "Grace Lee", "Hiro Tanaka", "Inés García", "Jonas Berg", "Kofi Mensah", "Lena Novak"]
LOREM = ["Agenda", "and", "notes", "for", "the", "meeting.", "Please", "read", "the", "linked", "document", "before", "joining;", "we", "will", "go", "through", "open", "questions,", "decide", "on", "the", "next", "steps", "and", "assign", "owners.", "Dial-in", "details", "are", "below,", "the", "room", "has", "a", "projector", "and", "a", "whiteboard.", "https://docs.example.org/d/{n}", "—", "bring", "numbers", "for", "Q{q}.", ""]


def fold(line: str) -> str:
    """RFC 5545 line folding at 75 octets, never inside a UTF-8 sequence."""
    data = line.encode()
    if len(data) <= 75:
        return line
    parts: list[str] = []
    start, limit = 0, 75
    while start < len(data):
        end = min(start + limit, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:
            end -= 1
        parts.append(data[start:end].decode())
        start, limit = end, 74
    return "\r\n ".join(parts)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _email(name: str) -> str:
    return name.split()[0].lower().replace("é", "e").replace("ü", "u") + "@example.org"


def _stamp(value: datetime) -> str:
    return value.strftime("%Y%m%dT%H%M%SZ")


def event_ics(index: int, *, revision: int = 0, seed: int = 7) -> str:
    """One calendar object resource (VCALENDAR text, CRLF, folded): item `index`, edited `revision` times."""
    rnd = random.Random(seed * 1_000_003 + index)
    uid = f"ev-{index:05d}@bench.example"
    kind = rnd.random()
    series, all_day = kind < 0.10, 0.10 <= kind < 0.15
    zone = rnd.choice([*TIMEZONES, "UTC"])
    day = date(2026, 1, 5) + timedelta(days=rnd.randrange(0, 720))
    start = datetime(day.year, day.month, day.day, rnd.randrange(7, 19), rnd.choice((0, 15, 30, 45)))
    length = timedelta(minutes=rnd.choice((15, 30, 45, 60, 90, 120)))
    created = datetime(2025, 6, 1) + timedelta(minutes=index)
    title = " ".join(rnd.choice(WORDS) for _ in range(rnd.randrange(2, 6))).capitalize()
    if revision:
        title += f" (rev {revision})"
    words = [w.format(n=index, q=rnd.randrange(1, 5)) for w in LOREM]
    description = "\n".join(" ".join(words[: rnd.randrange(8, len(words))])
                            for _ in range(rnd.randrange(2, 14)))
    organizer = rnd.choice(PEOPLE)
    attendees = rnd.sample([p for p in PEOPLE if p != organizer], rnd.randrange(0, 7))

    def when(name: str, value: datetime) -> str:
        if zone == "UTC":
            return f"{name}:{_stamp(value)}"
        return f"{name};TZID={zone}:{value:%Y%m%dT%H%M%S}"

    def vevent(recurrence_id: datetime | None, begin: datetime, summary: str) -> list[str]:
        lines = ["BEGIN:VEVENT", f"UID:{uid}", f"DTSTAMP:{_stamp(created + timedelta(days=revision))}",
                 f"CREATED:{_stamp(created)}", f"LAST-MODIFIED:{_stamp(created + timedelta(days=revision))}",
                 f"SEQUENCE:{revision}"]
        if recurrence_id is not None:
            lines.append(when("RECURRENCE-ID", recurrence_id))
        if all_day:
            lines += [f"DTSTART;VALUE=DATE:{begin:%Y%m%d}",
                      f"DTEND;VALUE=DATE:{begin + timedelta(days=rnd.randrange(1, 4)):%Y%m%d}"]
        else:
            lines += [when("DTSTART", begin), when("DTEND", begin + length)]
        if series and recurrence_id is None:
            lines.append(f"RRULE:FREQ=WEEKLY;COUNT={rnd.randrange(10, 53)}")
            lines.append(when("EXDATE", begin + timedelta(weeks=3)))
        lines += [f"SUMMARY:{_escape(summary)}", f"DESCRIPTION:{_escape(description)}",
                  f"LOCATION:{_escape(rnd.choice(['Room 1', 'Room 2, 3rd floor', 'Online', 'Café Central; Berlin']))}",
                  f"CATEGORIES:{rnd.choice(WORDS)},{rnd.choice(WORDS)}", "STATUS:CONFIRMED",
                  f"TRANSP:{rnd.choice(['OPAQUE', 'TRANSPARENT'])}", "CLASS:PUBLIC",
                  "X-MICROSOFT-CDO-BUSYSTATUS:BUSY"]
        if attendees:
            lines.append(f"ORGANIZER;CN={organizer}:mailto:{_email(organizer)}")
            for person in attendees:
                lines.append(f"ATTENDEE;CN={person};CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;"
                             f"PARTSTAT={rnd.choice(['ACCEPTED', 'NEEDS-ACTION', 'TENTATIVE', 'DECLINED'])};"
                             f"RSVP=TRUE:mailto:{_email(person)}")
        for minutes in rnd.sample((5, 10, 15, 30, 60), rnd.choice((0, 1, 1, 2))):
            lines += ["BEGIN:VALARM", "ACTION:DISPLAY", f"TRIGGER:-PT{minutes}M",
                      f"DESCRIPTION:{_escape(summary)}", "END:VALARM"]
        lines.append("END:VEVENT")
        return lines

    body = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//calsync bench//seed//EN", "CALSCALE:GREGORIAN"]
    if zone != "UTC" and not all_day:
        body += TIMEZONES[zone].splitlines()
    body += vevent(None, start, title)
    if series:
        for week in rnd.sample((1, 2, 4, 5, 6, 7), rnd.randrange(1, 4)):
            original = start + timedelta(weeks=week)
            body += vevent(original, original + timedelta(hours=rnd.choice((-1, 1, 2))), title + " (moved)")
    body.append("END:VCALENDAR")
    return "\r\n".join(fold(line) for line in body) + "\r\n"


def item_name(index: int) -> str:
    return f"ev-{index:05d}"


def items(count: int) -> Iterator[tuple[str, str]]:
    for i in range(count):
        yield item_name(i), event_ics(i)


def seed_radicale(collection_dir: Path, count: int) -> None:
    """Radicale's filesystem layout: the collection folder, its props, one file per item."""
    collection_dir.mkdir(parents=True, exist_ok=True)
    props = {"tag": "VCALENDAR", "D:displayname": "Bench", "C:supported-calendar-component-set": "VEVENT"}
    (collection_dir / ".Radicale.props").write_text(json.dumps(props))
    for name, text in items(count):
        (collection_dir / f"{name}.ics").write_bytes(text.encode())


def seed_xandikos(repo_dir: Path, count: int) -> None:
    """Xandikos's layout: files in the collection's git work tree, then one commit."""
    for name, text in items(count):
        (repo_dir / f"{name}.ics").write_bytes(text.encode())
    git = ["git", "-C", str(repo_dir), "-c", "user.name=bench", "-c", "user.email=bench@example.org",
           "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "add", "-A", "."], check=True, capture_output=True)
    subprocess.run([*git, "commit", "-q", "-m", f"seed {count} events"], check=True, capture_output=True)
