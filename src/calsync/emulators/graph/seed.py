"""Seeding: many realistic events built straight into storage (benchmarks need 100,000 in seconds)."""
from __future__ import annotations

import random
import time
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from calsync.emulators.common import (
    SEED_KINDS,
    SEED_LENGTHS,
    SEED_PEOPLE,
    SEED_PLACES,
    SEED_TOPICS,
    gc_paused,
    is_int,
)
from calsync.emulators.graph.fields import _NO_RESPONSE, _ical_uid
from calsync.emulators.graph.recurrence import _DAYS, _Series
from calsync.emulators.graph.state import _Calendar, _Event, _Store, _User
from calsync.emulators.graph.times import _parse_instant, _When


def _seed_options(spec: Any) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise ValueError("seed spec must be a JSON object")  # noqa: TRY004 - the admin API answers ValueError as 400
    allowed = {"count", "start", "days", "seed", "recurring_every", "online_every"}
    if set(spec) - allowed:
        raise ValueError(f"unknown seed keys: {sorted(set(spec) - allowed)}")
    out: dict[str, Any] = {"count": spec.get("count", 100), "days": spec.get("days", 60), "seed": spec.get("seed", 1),
                           "recurring_every": spec.get("recurring_every", 0),
                           "online_every": spec.get("online_every", 0)}
    limits = {"count": (0, 1_000_000), "days": (1, 3650), "seed": (-(2**63), 2**63),
              "recurring_every": (0, 10**9), "online_every": (0, 10**9)}
    for key, (low, high) in limits.items():
        if not is_int(out[key], low, high):
            raise ValueError(f"{key} must be an integer in [{low}, {high}]")
    start = _parse_instant(spec.get("start", "2026-11-01T00:00:00Z"))
    if start is None:
        raise ValueError("start must be an ISO 8601 timestamp")
    out["start"] = start
    return out


class _Seeder:
    """Builds events directly in storage, skipping per-request validation, for speed."""

    def __init__(self, emu: _Store, user: _User, cal: _Calendar, options: dict[str, Any]) -> None:
        self.emu = emu
        self.user = user
        self.cal = cal
        self.opt = options
        self.rng = random.Random(options["seed"])
        self.utc = ZoneInfo("UTC")

    def run(self) -> None:
        """Build all events with the cyclic GC paused (see ``common.gc_paused``)."""
        now = time.time()
        with gc_paused(self.opt["count"]):
            for i in range(1, self.opt["count"] + 1):
                ev = self._event(i, now)
                self.user.events[ev.key] = ev
                self.emu._place(self.cal, ev)
                entry = (ev.key, None)
                self.cal.log.append(entry)
                self.cal.last_seq[entry] = self.cal.seq

    def _event(self, i: int, now: float) -> _Event:
        """One seeded event; all choices come from a single 64-bit draw."""
        bits = self.rng.getrandbits(64)
        bits, day = divmod(bits, self.opt["days"])
        bits, hour = divmod(bits, 8)
        bits, quarter = divmod(bits, 4)
        bits, length = divmod(bits, len(SEED_LENGTHS))
        bits, topic = divmod(bits, len(SEED_TOPICS))
        bits, kind = divmod(bits, len(SEED_KINDS))
        bits, place = divmod(bits, len(SEED_PLACES))
        bits, who = divmod(bits, len(SEED_PEOPLE))
        start = (self.opt["start"] + timedelta(days=day, hours=9 + hour, minutes=15 * quarter)).replace(tzinfo=None)
        end = start + timedelta(minutes=SEED_LENGTHS[length])
        title = f"{SEED_TOPICS[topic]} {SEED_KINDS[kind]}"
        person = SEED_PEOPLE[who]
        data: dict[str, Any] = {
            "subject": title,
            "body": {"contentType": "text", "content": f"{title} #{i}: agenda, notes and follow-ups."},
            "location": {"displayName": SEED_PLACES[place]},
            "locations": [{"displayName": SEED_PLACES[place]}],
            "attendees": [{"type": "required", "status": dict(_NO_RESPONSE),
                           "emailAddress": {"name": person.title(), "address": f"{person}@example.org"}}],
        }
        key = self.rng.getrandbits(128).to_bytes(16, "big")
        ev = _Event(key, self.cal.key, data, _When(start, "UTC", self.utc), _When(end, "UTC", self.utc), now, now,
                    self.emu._change_key(self.user), _ical_uid(key))
        every = self.opt["online_every"]
        if every and i % every == 0:
            data["isOnlineMeeting"] = True
            data["onlineMeetingProvider"] = "teamsForBusiness"
            ev.online = self.emu._online_info(self.user)
        every = self.opt["recurring_every"]
        if every and i % every == 0:
            rec = {"pattern": {"type": "weekly", "interval": 1, "month": 0, "dayOfMonth": 0,
                               "daysOfWeek": [_DAYS[start.weekday()]], "firstDayOfWeek": "sunday", "index": "first"},
                   "range": {"type": "numbered", "startDate": start.date().isoformat(), "endDate": "0001-01-01",
                             "recurrenceTimeZone": "UTC", "numberOfOccurrences": 4 + bits % 9}}
            data["recurrence"] = rec
            ev.series = _Series(rec, ev.start, ev.end)
        return ev
