"""Seeding: many realistic events built straight into storage (benchmarks need 100,000 in seconds)."""
from __future__ import annotations

import random
import time
from typing import Any

from calsync.emulators.common import (
    SEED_KINDS,
    SEED_LENGTHS,
    SEED_PEOPLE,
    SEED_PLACES,
    SEED_TOPICS,
    gc_paused,
)
from calsync.emulators.common import rfc3339_ms as _fmt_ts
from calsync.emulators.google.fields import _RESPONSE_STATUSES
from calsync.emulators.google.state import _Calendar, _Event, _random_id, _Store
from calsync.emulators.google.times import _parse_rfc3339


def _seed_options(spec: Any) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise ValueError("seed spec must be a JSON object")  # noqa: TRY004 - the admin API answers ValueError as 400
    allowed = {"count", "start", "days", "seed", "conference_every", "recurring_every"}
    if set(spec) - allowed:
        raise ValueError(f"unknown seed keys: {sorted(set(spec) - allowed)}")
    out: dict[str, Any] = {"count": spec.get("count", 100), "days": spec.get("days", 60), "seed": spec.get("seed", 1),
                           "conference_every": spec.get("conference_every", 0),
                           "recurring_every": spec.get("recurring_every", 0)}
    limits = {"count": (0, 1_000_000), "days": (1, 3650), "seed": (-(2**63), 2**63),
              "conference_every": (0, 10**9), "recurring_every": (0, 10**9)}
    for key, (low, high) in limits.items():
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{key} must be an integer in [{low}, {high}]")
    start = _parse_rfc3339(spec.get("start", "2026-11-01T00:00:00Z"))
    if start is None or start.tzinfo is None:
        raise ValueError("start must be an RFC 3339 timestamp with an offset")
    out["start_ts"] = start.timestamp()
    return out


class _Seeder:
    """Builds events directly in storage, skipping per-request validation, for speed."""

    def __init__(self, emu: _Store, cal: _Calendar, options: dict[str, Any]) -> None:
        self.emu = emu
        self.cal = cal
        self.opt = options
        self.rng = random.Random(options["seed"])
        self.creator = {"email": cal.owner, "self": True}
        self.organizer = emu._organizer(cal, None)

    def run(self) -> None:
        """Build all events with the cyclic GC paused (see ``common.gc_paused``)."""
        now = time.time()
        created = _fmt_ts(now)
        with gc_paused(self.opt["count"]):
            for i in range(1, self.opt["count"] + 1):
                self.emu._store_new(self.cal, self._event(i, created), now, created)

    def _event(self, i: int, created: str) -> _Event:
        """One seeded event; all choices come from a single 64-bit draw (random.choice is too slow here)."""
        bits = self.rng.getrandbits(64)
        bits, day = divmod(bits, self.opt["days"])
        bits, hour = divmod(bits, 8)
        bits, quarter = divmod(bits, 4)
        bits, length = divmod(bits, len(SEED_LENGTHS))
        bits, topic = divmod(bits, len(SEED_TOPICS))
        bits, kind = divmod(bits, len(SEED_KINDS))
        bits, place = divmod(bits, len(SEED_PLACES))
        bits, who = divmod(bits, len(SEED_PEOPLE))
        bits, status = divmod(bits, len(_RESPONSE_STATUSES))
        start_ts = self.opt["start_ts"] + day * 86400 + (9 + hour) * 3600 + quarter * 900
        end_ts = start_ts + SEED_LENGTHS[length] * 60
        title = f"{SEED_TOPICS[topic]} {SEED_KINDS[kind]}"
        attendees = [{"email": f"{SEED_PEOPLE[who]}@example.org", "responseStatus": _RESPONSE_STATUSES[status]}]
        if bits % 3 == 0:
            other = SEED_PEOPLE[(who + 1 + bits % 7) % len(SEED_PEOPLE)]
            attendees.append({"email": f"{other}@example.org", "responseStatus": "needsAction"})
        data: dict[str, Any] = {
            "summary": title,
            "description": f"{title} #{i}: agenda, notes and follow-ups.",
            "location": SEED_PLACES[place],
            "start": {"dateTime": _utc_text(start_ts)},
            "end": {"dateTime": _utc_text(end_ts)},
            "attendees": attendees,
        }
        event_id = _random_id(self.rng)
        while event_id in self.cal.events:
            event_id = _random_id(self.rng)
        ev = _Event(event_id, -1, data, f"{event_id}@google.com", created, self.creator, self.organizer,
                    start_ts=start_ts, end_ts=end_ts, span_end_ts=end_ts)
        every = self.opt["conference_every"]
        if every and i % every == 0:
            data["conferenceData"] = self._zoom(self.rng)
        every = self.opt["recurring_every"]
        if every and i % every == 0:
            weeks = 4 + bits % 9
            data["recurrence"] = [f"RRULE:FREQ=WEEKLY;COUNT={weeks}"]
            data["start"]["timeZone"] = "UTC"
            data["end"]["timeZone"] = "UTC"
            ev.span_end_ts = end_ts + (weeks - 1) * 7 * 86400
        return ev

    @staticmethod
    def _zoom(rng: random.Random) -> dict[str, Any]:
        meeting = str(rng.randrange(10**9, 10**11))
        return {
            "conferenceId": meeting,
            "conferenceSolution": {"key": {"type": "addOn"}, "name": "Zoom",
                                   "iconUri": "https://zoom.example/icon.png"},
            "entryPoints": [{"entryPointType": "video", "uri": f"https://zoom.example/j/{meeting}",
                             "label": f"zoom.example/j/{meeting}", "meetingCode": meeting}],
        }


def _utc_text(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
