"""Seeding: many realistic events built straight into storage (benchmarks need 100,000 in seconds)."""

from __future__ import annotations

import random
import time
from typing import Any

from calsync.emulators.common import SEED_PEOPLE, SEED_START, gc_paused, seed_options, seed_pick
from calsync.emulators.common import rfc3339_ms as _fmt_ts
from calsync.emulators.google.fields import _RESPONSE_STATUSES
from calsync.emulators.google.state import _Calendar, _Event, _random_id, _Store
from calsync.emulators.google.times import _parse_rfc3339


def _seed_options(spec: Any) -> dict[str, Any]:
    out = seed_options(spec, ("conference_every", "recurring_every"))
    start = _parse_rfc3339(spec.get("start", SEED_START))
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
        pick = seed_pick(self.rng, self.opt["days"])
        bits, status = divmod(pick.bits, len(_RESPONSE_STATUSES))
        start_ts = self.opt["start_ts"] + pick.day * 86400 + (9 + pick.hour) * 3600 + pick.quarter * 900
        end_ts = start_ts + pick.minutes * 60
        attendees = [{"email": f"{SEED_PEOPLE[pick.who]}@example.org", "responseStatus": _RESPONSE_STATUSES[status]}]
        if bits % 3 == 0:
            other = SEED_PEOPLE[(pick.who + 1 + bits % 7) % len(SEED_PEOPLE)]
            attendees.append({"email": f"{other}@example.org", "responseStatus": "needsAction"})
        data: dict[str, Any] = {
            "summary": pick.title,
            "description": pick.description(i),
            "location": pick.place,
            "start": {"dateTime": _utc_text(start_ts)},
            "end": {"dateTime": _utc_text(end_ts)},
            "attendees": attendees,
        }
        event_id = _random_id(self.rng)
        while event_id in self.cal.events:
            event_id = _random_id(self.rng)
        ev = _Event(
            event_id,
            -1,
            data,
            f"{event_id}@google.com",
            created,
            self.creator,
            self.organizer,
            start_ts=start_ts,
            end_ts=end_ts,
            span_end_ts=end_ts,
        )
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
            "conferenceSolution": {
                "key": {"type": "addOn"},
                "name": "Zoom",
                "iconUri": "https://zoom.example/icon.png",
            },
            "entryPoints": [
                {
                    "entryPointType": "video",
                    "uri": f"https://zoom.example/j/{meeting}",
                    "label": f"zoom.example/j/{meeting}",
                    "meetingCode": meeting,
                }
            ],
        }


def _utc_text(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
