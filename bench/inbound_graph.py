"""Inbound sync benchmark against the Microsoft Graph (Outlook) emulator on loopback.

The same figures as bench/inbound_google.py (shared harness: bench/_inbound_common.py): initial full
sync (calendarView delta over the provider's window) of calendars of several sizes, then an
incremental sync (the delta link) of N remote changes; events/s, requests, pages and peak RSS of
a fresh syncing process per size, and the client CPU per 1,000 events of the full sync with the shares
of parsing, deciding and storing and the garbage collector's share (SQLite, or PostgreSQL with
`--database postgresql`).

Page size: the provider asks with ``Prefer: odata.maxpagesize=N``. Graph documents the header for
calendarView delta but no maximum; the emulator caps it at its ``delta_max_page_size`` switch
(1000 unless changed), and the default here is whatever that cap is, i.e. the largest page the
service will give. The calendar is seeded through ``POST /emulator/calendars/{mailbox}/seed`` over a
year starting a week ago, so every event lies inside the delta window (30 days back, 365 ahead); one
event in 50 is a weekly series and one in 10 an online meeting. Delta lists a series as its
occurrences; the provider folds them back into the series master, which costs requests of its own
(compare `req` with `pages`).

    python bench/inbound_graph.py [--sizes 10000,100000] [--changes 100] [--repeat N] [--page-size 1000]
        [--database sqlite|postgresql] [--pg-url URL]
"""
from __future__ import annotations

import time

import httpx
from _inbound_common import main

from calsync.providers.base import Provider
from calsync.providers.graph import GraphProvider

SEED_DAYS = 358  # with the start a week back, the last event still ends inside the 365-day window


class Graph:
    """Outlook through Graph: the default calendar of one emulated mailbox."""

    kind = "graph"
    token = "bench"

    def default_page_size(self, base: str) -> int:
        switches = httpx.get(f"{base}/emulator/switches").raise_for_status().json()
        return int(switches["delta_max_page_size"])

    def seed(self, base: str, size: int) -> str:
        mailbox = f"{self.token}@contoso.example"  # what the emulator makes of the bearer token "bench"
        week_ago = (int(time.time()) - 7 * 86400) // 86400 * 86400
        made = httpx.post(f"{base}/emulator/calendars/{mailbox}/seed", timeout=600, json={
            "count": size, "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(week_ago)),
            "days": SEED_DAYS, "seed": 1, "online_every": 10, "recurring_every": 50,
        }).raise_for_status().json()
        return str(made["calendarId"])

    def provider(self, base: str, page_size: int) -> Provider:
        return GraphProvider(self.token, base, page_size=page_size)

    def remote_changes(self, base: str, calendar_id: str, count: int) -> None:
        """Single events only: an edit to a series master would change each of its occurrences."""
        with httpx.Client(base_url=f"{base}/v1.0", headers={"Authorization": f"Bearer {self.token}"}) as api:
            listed = api.get(f"/me/calendars/{calendar_id}/events",
                             params={"$top": min(1000, count * 2)}).raise_for_status().json()["value"]
            singles = [item for item in listed if item["type"] == "singleInstance"][:count]
            for n, item in enumerate(singles):
                if n % 4 == 3:
                    api.delete(f"/me/events/{item['id']}").raise_for_status()
                else:
                    api.patch(f"/me/events/{item['id']}", json={"subject": f"changed {n}"}).raise_for_status()


if __name__ == "__main__":
    main(Graph(), __file__, __doc__)
