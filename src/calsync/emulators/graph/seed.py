"""Seeding: many realistic events built straight into storage (benchmarks need 100,000 in seconds)."""

from __future__ import annotations

import random
import time
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from calsync.emulators.common import SEED_PEOPLE, SEED_START, gc_paused, seed_options, seed_pick
from calsync.emulators.graph.fields import _NO_RESPONSE, _ical_uid
from calsync.emulators.graph.recurrence import _DAYS, _Series
from calsync.emulators.graph.state import _Calendar, _Event, _Store, _User
from calsync.emulators.graph.times import _parse_instant, _When


def _seed_options(spec: Any) -> dict[str, Any]:
    out = seed_options(spec, ("recurring_every", "online_every"))
    start = _parse_instant(spec.get("start", SEED_START))
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
        pick = seed_pick(self.rng, self.opt["days"])
        start = (self.opt["start"] + timedelta(days=pick.day, hours=9 + pick.hour, minutes=15 * pick.quarter)).replace(
            tzinfo=None
        )
        end = start + timedelta(minutes=pick.minutes)
        person = SEED_PEOPLE[pick.who]
        data: dict[str, Any] = {
            "subject": pick.title,
            "body": {"contentType": "text", "content": pick.description(i)},
            "location": {"displayName": pick.place},
            "locations": [{"displayName": pick.place}],
            "attendees": [
                {
                    "type": "required",
                    "status": dict(_NO_RESPONSE),
                    "emailAddress": {"name": person.title(), "address": f"{person}@example.org"},
                }
            ],
        }
        key = self.rng.getrandbits(128).to_bytes(16, "big")
        ev = _Event(
            key,
            self.cal.key,
            data,
            _When(start, "UTC", self.utc),
            _When(end, "UTC", self.utc),
            now,
            now,
            self.emu._change_key(self.user),
            _ical_uid(key),
        )
        every = self.opt["online_every"]
        if every and i % every == 0:
            data["isOnlineMeeting"] = True
            data["onlineMeetingProvider"] = "teamsForBusiness"
            ev.online = self.emu._online_info(self.user)
        every = self.opt["recurring_every"]
        if every and i % every == 0:
            rec = {
                "pattern": {
                    "type": "weekly",
                    "interval": 1,
                    "month": 0,
                    "dayOfMonth": 0,
                    "daysOfWeek": [_DAYS[start.weekday()]],
                    "firstDayOfWeek": "sunday",
                    "index": "first",
                },
                "range": {
                    "type": "numbered",
                    "startDate": start.date().isoformat(),
                    "endDate": "0001-01-01",
                    "recurrenceTimeZone": "UTC",
                    "numberOfOccurrences": 4 + pick.bits % 9,
                },
            }
            data["recurrence"] = rec
            ev.series = _Series(rec, ev.start, ev.end)
        return ev
