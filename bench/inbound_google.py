"""Inbound sync benchmark against the Google emulator on loopback.

Initial full sync of calendars of several sizes, then an incremental sync of N remote changes.
Prints events/s, requests per sync, peak RSS of the syncing process, and the client CPU (user +
system of the syncing process, which the emulator is not part of) per 1,000 events of the full sync
with the shares of parsing, deciding and storing and the cyclic garbage collector's share
(`CALSYNC_BENCH_PROFILE=FILE` also writes a cProfile of the engine's thread). The store is a fresh
SQLite file, or a fresh PostgreSQL database with `--database postgresql`. The emulator runs in its
own process and each size is synced by a fresh child process, so the RSS figures are the sync's own
(the harness is bench/_inbound_common.py, shared with bench/inbound_graph.py).

    python bench/inbound_google.py [--sizes 10000,100000] [--changes 100] [--repeat N] [--page-size 2500]
        [--database sqlite|postgresql] [--pg-url URL]
"""
from __future__ import annotations

import httpx
from _inbound_common import main

from calsync.providers.base import Provider
from calsync.providers.google import MAX_PAGE, GoogleProvider


class Google:
    """Google Calendar: the primary calendar of one emulated user, seeded server-side."""

    kind = "google"
    token = "bench"

    def default_page_size(self, base: str) -> int:
        return MAX_PAGE  # events.list's maxResults limit

    def seed(self, base: str, size: int) -> str:
        calendar_id: str = httpx.get(f"{base}/calendar/v3/calendars/primary",
                                     headers={"Authorization": f"Bearer {self.token}"}).json()["id"]
        httpx.post(f"{base}/emulator/calendars/{calendar_id}/seed", timeout=600, json={
            "count": size, "start": "2026-01-01T00:00:00Z", "days": 365, "seed": 1,
            "conference_every": 10, "recurring_every": 50,
        }).raise_for_status()
        return calendar_id

    def provider(self, base: str, page_size: int) -> Provider:
        return GoogleProvider(self.token, base, page_size=page_size)

    def remote_changes(self, base: str, calendar_id: str, count: int) -> None:
        with httpx.Client(base_url=f"{base}/calendar/v3", headers={"Authorization": f"Bearer {self.token}"}) as api:
            first = api.get(f"/calendars/{calendar_id}/events", params={"maxResults": count}).json()["items"]
            for n, item in enumerate(first):
                if n % 4 == 3:
                    api.delete(f"/calendars/{calendar_id}/events/{item['id']}")
                else:
                    api.patch(f"/calendars/{calendar_id}/events/{item['id']}", json={"summary": f"changed {n}"})


if __name__ == "__main__":
    main(Google(), __file__, __doc__)
